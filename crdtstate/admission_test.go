package crdtstate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// Admission records share the CRDT with the pins but never show up as
// pins, replace each other per peer, survive a restart, and are told to
// the owner when they change.
func TestAdmissionsBesideThePins(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, closeState := openState(t, dir, nil)
	changed := make(chan struct{}, 10)
	s.deps.OnAdmissions = func() { changed <- struct{}{} }
	if err := s.Add(ctx, testPin(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	at := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for _, rec := range []api.Admission{
		{Peer: a, By: b, At: at, Note: "rack 3"},
		{Peer: b, By: b, At: at},
		{Peer: b, By: b, At: at.Add(time.Minute), Revoked: true},
	} {
		if err := s.PutAdmission(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("OnAdmissions was not called")
	}
	if err := s.PutAdmission(ctx, api.Admission{Peer: "not a peer"}); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a bad peer ID: %v, want a bad request", err)
	}
	if err := s.PutAdmission(ctx, api.Admission{Peer: a, Note: string(make([]byte, 300))}); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a 300-byte note: %v, want a bad request", err)
	}
	check := func(s *State, when string) {
		t.Helper()
		got, err := s.Admissions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]api.Admission{}
		for _, g := range got {
			by[g.Peer.String()] = g
		}
		if len(got) != 2 || by[a.String()].Revoked || by[a.String()].Note != "rack 3" || !by[b.String()].Revoked {
			t.Fatalf("%s: admissions %+v; want a admitted (rack 3), b revoked", when, got)
		}
		n := 0
		if err := s.Each(ctx, func(api.Pin) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("%s: %d pins listed (%v), want the one pin", when, n, err)
		}
		if d, err := s.Digest(ctx); err != nil || d != before {
			t.Fatalf("%s: the digest changed with admissions: %v, %v", when, d, err)
		}
	}
	check(s, "written")
	closeState()
	s2, closeAgain := openState(t, dir, nil)
	defer closeAgain()
	check(s2, "after a restart")
}
