package status

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// In a ring of more than FanOut other peers, a global status asks only the
// peers whose heartbeats show work outstanding, and answers for the other
// allocated peers from their heartbeats: pinned, pin_queued (the pin is
// newer than what the peer took in), cluster_error (heartbeats stopped, or
// none known). Peers a pin is not allocated to are not listed.
func TestLargeRingStatusIsAnsweredFromHeartbeats(t *testing.T) {
	self := testkit.PeerID(t, 0)
	var others []peer.ID
	for i := 1; i <= FanOut+10; i++ {
		others = append(others, testkit.PeerID(t, i))
	}
	busy, healthy, behind, down, unknown := others[0], others[1], others[2], others[3], others[4]
	created := time.Unix(1000, 0)
	sums := map[peer.ID]Summary{
		busy:    {Alive: true, Queued: 2, Absorbed: created.UnixNano()},
		healthy: {Alive: true, Absorbed: created.UnixNano()},
		behind:  {Alive: true, Absorbed: created.UnixNano() - 1},
		down:    {Alive: false, Absorbed: created.UnixNano()},
	}
	for _, pid := range others[5:] {
		sums[pid] = Summary{Alive: true, Queued: 0, Absorbed: created.UnixNano()}
	}
	delete(sums, unknown)
	c1, c2 := testkit.Cid(1), testkit.Cid(2)
	if c1.Key() > c2.Key() {
		c1, c2 = c2, c1
	}
	allocs := map[string][]peer.ID{c1.Key(): {busy, healthy, behind, down, unknown}, c2.Key(): {healthy}}
	local := func(c api.Cid) api.PinInfo {
		return api.PinInfo{Cid: c, Peer: self, Allocations: allocs[c.Key()], Created: created,
			PinInfoShort: api.PinInfoShort{Status: api.StatusRemote}}
	}
	var mu sync.Mutex
	var asked []peer.ID
	g := Global{Self: self,
		Local: func(_ context.Context, c api.Cid) api.PinInfo { return local(c) },
		LocalAll: func(_ context.Context, fn func(api.PinInfo) error) error {
			for _, c := range []api.Cid{c1, c2} {
				if err := fn(local(c)); err != nil {
					return err
				}
			}
			return nil
		},
		Others:   func() []peer.ID { return others },
		Peername: func(peer.ID) string { return "" },
		Ask: func(_ context.Context, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error {
			mu.Lock()
			asked = append(asked, pid)
			mu.Unlock()
			if c.Defined() && c.Key() != c1.Key() {
				return nil
			}
			return fn(api.PinInfo{Cid: c1, Peer: pid, PinInfoShort: api.PinInfoShort{Status: api.StatusPinning}})
		},
		Summary: func(pid peer.ID) (Summary, bool) { s, ok := sums[pid]; return s, ok }}

	want := map[peer.ID]api.TrackerStatus{self: api.StatusRemote, busy: api.StatusPinning, healthy: api.StatusPinned,
		behind: api.StatusPinQueued, down: api.StatusClusterError, unknown: api.StatusClusterError}
	check := func(what string, gpi api.GlobalPinInfo) {
		t.Helper()
		if len(gpi.PeerMap) != len(want) {
			t.Errorf("%s: %d peers listed, want the %d allocated and self: %v", what, len(gpi.PeerMap), len(want), gpi.PeerMap)
		}
		for pid, st := range want {
			if got := gpi.PeerMap[pid.String()].Status; got != st {
				t.Errorf("%s: %s is %q, want %q", what, pid, got, st)
			}
		}
	}
	var all []api.GlobalPinInfo
	if err := g.All(context.Background(), nil, func(gpi api.GlobalPinInfo) error { all = append(all, gpi); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d pins, want 2", len(all))
	}
	check("All", all[0])
	if len(all[1].PeerMap) != 2 || all[1].PeerMap[healthy.String()].Status != api.StatusPinned {
		t.Errorf("the pin allocated to healthy alone: %v, want self and healthy pinned", all[1].PeerMap)
	}
	if !slices.Equal(asked, []peer.ID{busy}) {
		t.Fatalf("asked %v, want only the peer with work outstanding", asked)
	}
	asked = nil
	check("Of", g.Of(context.Background(), c1))
	if !slices.Equal(asked, []peer.ID{busy}) {
		t.Fatalf("Of asked %v, want only the allocated peer with work outstanding", asked)
	}
	// A filter keeps only the peers it matches.
	var errs []api.GlobalPinInfo
	if err := g.All(context.Background(), api.StatusFilter{api.StatusClusterError}, func(gpi api.GlobalPinInfo) error {
		errs = append(errs, gpi)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || len(errs[0].PeerMap) != 2 {
		t.Fatalf("cluster_error filter: %v, want c1 with down and unknown", errs)
	}

	// At FanOut others or fewer, every peer is asked, as before.
	others = others[:FanOut]
	asked = nil
	if err := g.All(context.Background(), nil, func(api.GlobalPinInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(asked) != FanOut {
		t.Fatalf("a ring of %d others: %d asked, want all", FanOut, len(asked))
	}
}
