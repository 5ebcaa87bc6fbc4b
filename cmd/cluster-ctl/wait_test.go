package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/restapi/client"
)

func testPeerID(t *testing.T) peer.ID {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// statusServer answers GET /pins/{cid} with the statuses in turn (the last
// one again once they run out) and counts the calls.
func statusServer(t *testing.T, c api.Cid, steps ...map[peer.ID]api.TrackerStatus) (*client.Client, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/pins/"+c.String() {
			http.Error(w, `{"code":404,"message":"not here"}`, http.StatusNotFound)
			return
		}
		n := int(calls.Add(1)) - 1
		step := steps[min(n, len(steps)-1)]
		g := api.GlobalPinInfo{Cid: c, PeerMap: map[string]api.PinInfoShort{}}
		for pid, st := range step {
			g.PeerMap[pid.String()] = api.PinInfoShort{PeerName: pid.ShortString(), Status: st}
		}
		json.NewEncoder(w).Encode(g)
	}))
	t.Cleanup(srv.Close)
	cl, err := client.New(srv.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return cl, &calls
}

func TestWaitLimit(t *testing.T) {
	a, b, other := testPeerID(t), testPeerID(t), testPeerID(t)
	c := testkit.Cid(0)
	// a has pinned, b is still pinning, forever; other is not allocated.
	now := map[peer.ID]api.TrackerStatus{a: api.StatusPinned, b: api.StatusPinning, other: api.StatusRemote}
	pin := api.Pin{Cid: c, Allocations: []peer.ID{a, b},
		PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 2}}
	ctx := context.Background()

	cl, _ := statusServer(t, c, now)
	// Default: the pin's minimum replication factor (1) is reached.
	if err := (pinFlags{waitTimeout: 5 * time.Second}).waitFor(ctx, cl, api.StatusPinned, pin); err != nil {
		t.Fatalf("rmin 1, one allocation pinned: %s", err)
	}
	// --wait-limit 2: both allocations are needed; b never gets there.
	err := (pinFlags{waitTimeout: 600 * time.Millisecond, waitLimit: 2}).waitFor(ctx, cl, api.StatusPinned, pin)
	if err == nil || !strings.Contains(err.Error(), "gave up waiting") || !strings.Contains(err.Error(), "on 2 of 2 peers (1 are)") {
		t.Fatalf("--wait-limit 2 with one allocation pinned: %v", err)
	}
	// A limit above the allocations means all of them; here they get there.
	cl, calls := statusServer(t, c, now, map[peer.ID]api.TrackerStatus{a: api.StatusPinned, b: api.StatusPinned, other: api.StatusRemote})
	if err := (pinFlags{waitTimeout: 5 * time.Second, waitLimit: 5}).waitFor(ctx, cl, api.StatusPinned, pin); err != nil {
		t.Fatalf("--wait-limit 5, both allocations pinned: %s", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("returned after %d status calls, want 2", calls.Load())
	}
	// A pin everywhere (rmin -1) waits for every peer, other included.
	everywhere := api.Pin{Cid: c, PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
	cl, _ = statusServer(t, c, map[peer.ID]api.TrackerStatus{a: api.StatusPinned, b: api.StatusPinned, other: api.StatusPinQueued})
	if err := (pinFlags{waitTimeout: 600 * time.Millisecond}).waitFor(ctx, cl, api.StatusPinned, everywhere); err == nil {
		t.Fatal("a pin everywhere counted as done with one peer still queued")
	}
	// An error anywhere ends the wait with the error.
	cl, _ = statusServer(t, c, map[peer.ID]api.TrackerStatus{a: api.StatusPinError, b: api.StatusPinning})
	err = (pinFlags{waitTimeout: 5 * time.Second}).waitFor(ctx, cl, api.StatusPinned, pin)
	if err == nil || !strings.Contains(err.Error(), a.String()) {
		t.Fatalf("a pin error: %v", err)
	}
}

// The status printed after pin add waits (up to a second) for peers that
// have not heard of the pin yet, and not at all when they all have.
func TestSettledStatus(t *testing.T) {
	a, b := testPeerID(t), testPeerID(t)
	c := testkit.Cid(0)
	pin := api.Pin{Cid: c, PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
	ctx := context.Background()

	cl, calls := statusServer(t, c,
		map[peer.ID]api.TrackerStatus{a: api.StatusPinning, b: api.StatusUnpinned},
		map[peer.ID]api.TrackerStatus{a: api.StatusPinned, b: api.StatusPinQueued})
	g, err := settledStatus(ctx, cl, pin, api.StatusPinned)
	if err != nil {
		t.Fatal(err)
	}
	if g.PeerMap[b.String()].Status != api.StatusPinQueued || calls.Load() != 2 {
		t.Fatalf("after %d calls b is %s", calls.Load(), g.PeerMap[b.String()].Status)
	}
	// A peer that never hears of it: the status is shown after a second.
	cl, _ = statusServer(t, c, map[peer.ID]api.TrackerStatus{a: api.StatusPinned, b: api.StatusUnpinned})
	start := time.Now()
	if g, err = settledStatus(ctx, cl, pin, api.StatusPinned); err != nil || g.PeerMap[b.String()].Status != api.StatusUnpinned {
		t.Fatalf("%+v, %v", g, err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("settling took %s", time.Since(start))
	}
	// For a removal, a peer still pinning it has not heard yet.
	cl, calls = statusServer(t, c, map[peer.ID]api.TrackerStatus{a: api.StatusUnpinned, b: api.StatusPinned},
		map[peer.ID]api.TrackerStatus{a: api.StatusUnpinned, b: api.StatusUnpinning})
	if _, err := settledStatus(ctx, cl, pin, api.StatusUnpinned); err != nil || calls.Load() != 2 {
		t.Fatalf("removal: %d calls, %v", calls.Load(), err)
	}
}

func TestTimeoutTakesSecondsOrADuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "0": 0, "2m": 2 * time.Minute, "1.5s": 1500 * time.Millisecond} {
		var s seconds
		if err := s.Set(in); err != nil || time.Duration(s) != want {
			t.Errorf("--timeout %s: %s, %v; want %s", in, time.Duration(s), err, want)
		}
	}
	for _, in := range []string{"abc", "-5s", "5 s"} {
		var s seconds
		if err := s.Set(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("--timeout %q: %v, want an error naming it", in, err)
		}
	}
}

// `commands` lists the whole tree, with what REFERENCE.md's ctl has.
func TestCommandsListsTheTree(t *testing.T) {
	root := rootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs([]string{"commands"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster-ctl id", "cluster-ctl peers ls", "cluster-ctl pin add", "cluster-ctl pin update",
		"cluster-ctl add", "cluster-ctl status", "cluster-ctl recover", "cluster-ctl health graph", "cluster-ctl health bandwidth",
		"cluster-ctl ipfs gc", "cluster-ctl version"} {
		if !strings.Contains(out.String()+"\n", want+"\n") {
			t.Errorf("commands does not list %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "cluster-ctl commands") {
		t.Error("commands lists itself (it is hidden)")
	}
}
