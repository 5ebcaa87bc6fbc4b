package pintracker

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

func TestHeldIndex(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var h heldIndex
	if h.has("a") {
		t.Fatal("an index with no listing says held")
	}
	h.pin("x", t0) // before any listing: not remembered
	h.install([]uint64{heldHash("b"), heldHash("a")}, t0)
	if !h.has("a") || !h.has("b") || h.has("c") || h.has("x") {
		t.Fatal("listing not reflected")
	}
	h.pin("c", t0.Add(time.Second))
	h.unpin("a", t0.Add(time.Second))
	if !h.has("c") || h.has("a") {
		t.Fatal("changes since the listing not reflected")
	}
	// A listing taken before the unpin of a (it still shows a) keeps the
	// unpin; one taken after forgets the older changes.
	h.install([]uint64{heldHash("a"), heldHash("b")}, t0.Add(500*time.Millisecond))
	if h.has("a") || !h.has("c") {
		t.Fatal("a listing older than a change undid it")
	}
	h.install([]uint64{heldHash("b")}, t0.Add(2*time.Second))
	if h.has("c") || h.has("a") || !h.has("b") || len(h.changedAt) != 0 {
		t.Fatal("a newer listing did not replace the changes")
	}
	// Past the cap, an unpin cannot be remembered: nothing is held until
	// a listing begun after it.
	for i := range maxHeldChanges {
		h.pin(fmt.Sprint("p", i), t0.Add(3*time.Second))
	}
	h.unpin("b", t0.Add(4*time.Second))
	if h.has("b") || h.has("p1") {
		t.Fatal("an index that lost an unpin still answers")
	}
	h.install([]uint64{heldHash("b")}, t0.Add(3*time.Second)) // begun before the loss
	if h.has("b") {
		t.Fatal("a listing begun before a lost unpin was installed")
	}
	h.install([]uint64{heldHash("z")}, t0.Add(5*time.Second))
	if !h.has("z") || h.has("b") {
		t.Fatal("a listing begun after the loss was not installed")
	}
}

// A re-allocation that keeps this peer's replica costs no kubo call; one
// that moves it away and back pins it again.
func TestReallocationKeepingThisReplicaCostsNoKuboCall(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	// Held by kubo before the tracker starts: the first listing says so.
	listed := mkPin(7, self, "other")
	listed.Version, listed.Mode = 2, api.PinModeRecursive
	ipfs.pins[listed.Cid.Key()] = api.IPFSPinRecursive
	ps.pins[listed.Cid.Key()] = *listed
	cfg := DefaultConfig()
	cfg.RecoverInterval = config.Duration(time.Hour)
	tr := startCfg(t, cfg, ipfs, ps)

	p := mkPin(6, self, "other")
	p.Version, p.Mode = 1, api.PinModeRecursive
	ps.add(tr, p)
	testkit.WaitFor(t, 10*time.Second, "pinned here", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return ipfs.has(p.Cid) && len(tr.ops) == 0
	})
	calls := func() int {
		ipfs.mu.Lock()
		defer ipfs.mu.Unlock()
		return ipfs.calls + ipfs.many
	}
	before := calls()
	for _, pin := range []*api.Pin{p, listed} {
		kept := *pin
		kept.Allocations, kept.Version = []peer.ID{self, "third"}, pin.Version+1
		ps.add(tr, &kept)
	}
	tr.mu.Lock()
	n := len(tr.ops)
	tr.mu.Unlock()
	if n != 0 || calls() != before {
		t.Fatalf("%d operations, %d kubo calls for re-allocations that keep the replica here", n, calls()-before)
	}
	// Away (unpinned), then back: pinned again.
	away := *p
	away.Allocations, away.Version = []peer.ID{"other", "third"}, 3
	ps.add(tr, &away)
	testkit.WaitFor(t, 10*time.Second, "unpinned here", func() bool { return !ipfs.has(p.Cid) })
	back := *p
	back.Allocations, back.Version = []peer.ID{self, "third"}, 4
	ps.add(tr, &back)
	testkit.WaitFor(t, 10*time.Second, "pinned here again", func() bool { return ipfs.has(p.Cid) })
}
