package admission

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// book is a Book over an in-memory list, with w a writer.
func book(policy string, list *[]api.Admission, kicks *int) *Book {
	return New(Deps{Self: "self", Policy: policy,
		IsWriter: func(p peer.ID) bool { return p == "w" || p == "self" },
		List:     func(context.Context) ([]api.Admission, error) { return *list, nil },
		Put:      func(_ context.Context, a api.Admission) error { *list = append(*list, a); return nil },
		Revoked:  func() { *kicks++ }})
}

// Who is allocated pins, and why, under each policy; a revocation wins
// over a write key (a writer's key may leak) but never over oneself.
func TestOf(t *testing.T) {
	ctx := context.Background()
	for _, policy := range []string{Admitted, Open} {
		list := []api.Admission{{Peer: "a"}, {Peer: "r", Revoked: true}, {Peer: "w", Revoked: true}, {Peer: "self", Revoked: true}}
		kicks := 0
		b := book(policy, &list, &kicks)
		if err := b.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		stranger := api.AdmissionNone
		if policy == Open {
			stranger = api.AdmissionOpen
		}
		for pid, want := range map[peer.ID]string{"a": api.AdmissionAdmitted, "r": api.AdmissionRevoked,
			"w": api.AdmissionRevoked, "self": api.AdmissionWriter, "x": stranger} {
			if got := b.Of(pid); got != want {
				t.Errorf("%s: %s is %q, want %q", policy, pid, got, want)
			}
			allocatable := want != api.AdmissionNone && want != api.AdmissionRevoked
			if got := b.Allocatable(pid); got != allocatable {
				t.Errorf("%s: %s allocatable %v", policy, pid, got)
			}
		}
		if got := b.Revoked(); len(got) != 2 || !got["r"] || !got["w"] {
			t.Errorf("%s: revoked %v, want r and w", policy, got)
		}
	}
}

// Set writes the record, is seen at once (before any reload), tells the
// repair of a revocation, and refuses to revoke oneself.
func TestSet(t *testing.T) {
	ctx := context.Background()
	var list []api.Admission
	kicks := 0
	b := book(Admitted, &list, &kicks)
	if _, err := b.Set(ctx, "self", true, ""); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("revoking oneself: %v", err)
	}
	if err := b.CheckAllocations([]peer.ID{"w", "x"}); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "cluster-ctl peers admit") {
		t.Fatalf("allocations to a stranger: %v", err)
	}
	if _, err := b.Set(ctx, "x", false, "volunteer"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckAllocations([]peer.ID{"w", "x"}); err != nil || !b.Allocatable("x") || kicks != 0 {
		t.Fatalf("after admitting x: %v, allocatable %v, %d kicks", err, b.Allocatable("x"), kicks)
	}
	if _, err := b.Set(ctx, "x", true, "stores nothing"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckAllocations([]peer.ID{"x"}); err == nil || !strings.Contains(err.Error(), "revoked") || kicks != 1 {
		t.Fatalf("after revoking x: %v, %d kicks", err, kicks)
	}
	if len(list) != 2 || list[1].By != "self" || list[1].Note != "stores nothing" {
		t.Fatalf("records written: %+v", list)
	}
}

// Verify marks an admitted peer verified once, keeping the curator's
// admission; it never lifts a revocation, never admits a stranger in an
// admitted ring, admits (verified) a peer of an open ring, and writes
// nothing for a writer.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	for _, policy := range []string{Admitted, Open} {
		list := []api.Admission{{Peer: "a", By: "curator", Note: "lab"}, {Peer: "r", Revoked: true}}
		kicks := 0
		b := book(policy, &list, &kicks)
		if err := b.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if !b.Unverified("a") || b.Unverified("w") || b.Unverified("self") {
			t.Fatalf("%s: unverified a %v, w %v", policy, b.Unverified("a"), b.Unverified("w"))
		}
		for _, pid := range []peer.ID{"a", "a", "r", "w", "x"} {
			if err := b.Verify(ctx, pid); err != nil {
				t.Fatal(err)
			}
		}
		wrote := list[2:]
		want := 1
		if policy == Open {
			want = 2 // x, a stranger allocated by the open policy
		}
		if len(wrote) != want || wrote[0].Peer != "a" || wrote[0].By != "curator" || wrote[0].Note != "lab" || wrote[0].Verified.IsZero() || wrote[0].Revoked {
			t.Fatalf("%s: records written %+v", policy, wrote)
		}
		if b.Unverified("a") || b.Of("r") != api.AdmissionRevoked {
			t.Fatalf("%s: after Verify: a unverified %v, r %s", policy, b.Unverified("a"), b.Of("r"))
		}
		if policy == Open && (b.Unverified("x") || b.Of("x") != api.AdmissionAdmitted) {
			t.Fatalf("open: x unverified %v, %s", b.Unverified("x"), b.Of("x"))
		}
	}
}
