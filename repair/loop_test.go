package repair

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// fakeCluster is one peer ("a", alone live, so in charge of every CID)
// with its pinset in memory.
type fakeCluster struct {
	mu   sync.Mutex
	pins map[string]api.Pin
	dead map[peer.ID]bool
	// unheard are the peers never heard from; nil: Unheard says nil (the
	// monitor has not listened long enough).
	unheard map[peer.ID]bool
	room    []peer.ID
	// erasureLost is what the last erasure repair was told of "u".
	erasureLost bool
	// erasureFails is how many erasure repairs fail before one succeeds;
	// erasureTries counts the tries.
	erasureFails, erasureTries int
	failed                     map[string][]peer.ID
}

func (f *fakeCluster) Self() peer.ID { return "a" }
func (f *fakeCluster) Pins(_ context.Context, fn func(api.Pin) error) error {
	f.mu.Lock()
	var pins []api.Pin
	for _, p := range f.pins {
		pins = append(pins, p)
	}
	f.mu.Unlock()
	for _, p := range pins {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakeCluster) Live() []peer.ID { return []peer.ID{"a"} }
func (f *fakeCluster) Dead() map[peer.ID]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.dead)
}
func (f *fakeCluster) Unheard() func(peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unheard == nil {
		return nil
	}
	u := maps.Clone(f.unheard)
	return func(pid peer.ID) bool { return u[pid] }
}
func (f *fakeCluster) NextDeath() (time.Time, bool) { return time.Time{}, false }
func (f *fakeCluster) Full() map[peer.ID]bool       { return nil }
func (f *fakeCluster) Room() []peer.ID              { f.mu.Lock(); defer f.mu.Unlock(); return slices.Clone(f.room) }
func (f *fakeCluster) RepairErasure(_ context.Context, lost func(peer.ID) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.erasureTries++
	f.erasureLost = lost("u")
	return f.erasureTries <= f.erasureFails
}

func (f *fakeCluster) Failed() map[string][]peer.ID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Allocate keeps keep and adds room peers up to the maximum, never one of
// avoid.
func (f *fakeCluster) Allocate(pin *api.Pin, keep, avoid []peer.ID) ([]peer.ID, error) {
	out := slices.Clone(keep)
	for _, r := range f.Room() {
		if len(out) < pin.ReplicationFactorMax && !slices.Contains(out, r) && !slices.Contains(avoid, r) {
			out = append(out, r)
		}
	}
	return out, nil
}
func (f *fakeCluster) Write(_ context.Context, pin *api.Pin) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins[pin.Cid.Key()] = *pin
	return nil
}
func (f *fakeCluster) Remove(_ context.Context, c api.Cid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pins, c.Key())
	return nil
}
func (f *fakeCluster) get(c api.Cid) (api.Pin, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pins[c.Key()]
	return p, ok
}

func rfPin(i int, expire time.Time, allocs ...peer.ID) api.Pin {
	return api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1, Allocations: allocs,
		PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, ExpireAt: expire}}
}

// The loop's passes, with its clock set by the test: a replica on a dead
// peer moves to a peer with room; a pin expires when the clock passes its
// expiry, not before.
func TestLoopPassesWithAClock(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	f := &fakeCluster{pins: map[string]api.Pin{}, room: []peer.ID{"a", "b"}}
	f.pins[testkit.Cid(1).Key()] = rfPin(1, time.Time{}, "a", "d")
	f.pins[testkit.Cid(2).Key()] = rfPin(2, t0.Add(time.Hour), "a", "b")
	l := NewLoop(DefaultConfig(), f)
	now := t0
	l.now = func() time.Time { return now }
	if err := l.survey(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := l.RepairPass(ctx, nil); err != nil || n != 0 {
		t.Fatalf("no peer dead: %d moved (%v), want none", n, err)
	}
	f.dead = map[peer.ID]bool{"d": true}
	if n, err := l.RepairPass(ctx, f.Dead()); err != nil || n != 1 {
		t.Fatalf("d dead: %d moved (%v), want 1", n, err)
	}
	if p, _ := f.get(testkit.Cid(1)); !slices.Equal(p.Allocations, []peer.ID{"a", "b"}) {
		t.Fatalf("pin 1 now on %v, want [a b]", p.Allocations)
	}
	now = t0.Add(59 * time.Minute)
	if n, err := l.ExpirePass(ctx); err != nil || n != 0 {
		t.Fatalf("a minute before its expiry: %d removed (%v)", n, err)
	}
	now = t0.Add(61 * time.Minute)
	if n, err := l.ExpirePass(ctx); err != nil || n != 1 {
		t.Fatalf("a minute after its expiry: %d removed (%v), want 1", n, err)
	}
	if _, ok := f.get(testkit.Cid(2)); ok {
		t.Fatal("the expired pin is still in the pinset")
	}
}

// A replica whose audits failed too often moves off its peer — alive,
// with room, and still a candidate — to another, and only that replica:
// the same peer keeps its other pins. The loop notices a new failure as a
// change and walks at once on a kick.
func TestLoopMovesAFailedReplica(t *testing.T) {
	f := &fakeCluster{pins: map[string]api.Pin{}, room: []peer.ID{"a", "b", "c"}}
	f.pins[testkit.Cid(1).Key()] = rfPin(1, time.Time{}, "a", "b")
	f.pins[testkit.Cid(2).Key()] = rfPin(2, time.Time{}, "a", "b")
	l := runLoop(t, f)
	f.mu.Lock()
	f.failed = map[string][]peer.ID{testkit.Cid(1).Key(): {"b"}}
	f.mu.Unlock()
	l.Kick()
	testkit.WaitFor(t, 5*time.Second, "the failed replica on b moved to c", func() bool {
		p, _ := f.get(testkit.Cid(1))
		return slices.Equal(p.Allocations, []peer.ID{"a", "c"})
	})
	if p, _ := f.get(testkit.Cid(2)); !slices.Equal(p.Allocations, []peer.ID{"a", "b"}) {
		t.Fatalf("b's other pin moved too: %v", p.Allocations)
	}
}

// Kick runs a pass at once (a peer left), long before the next tick.
func TestLoopKickRepairsNow(t *testing.T) {
	f := &fakeCluster{pins: map[string]api.Pin{}, room: []peer.ID{"a", "b"}}
	f.pins[testkit.Cid(1).Key()] = rfPin(1, time.Time{}, "a", "d")
	l := runLoop(t, f)
	f.mu.Lock()
	f.dead = map[peer.ID]bool{"d": true}
	f.mu.Unlock()
	l.Kick()
	testkit.WaitFor(t, 5*time.Second, "the replica on d moved", func() bool {
		p, _ := f.get(testkit.Cid(1))
		return slices.Equal(p.Allocations, []peer.ID{"a", "b"})
	})
}

// A peer this one never heard a heartbeat from (it died before this peer
// started, or gossip never brought its heartbeats) holds replicas: once
// the monitor says unheard peers count (it listened for a TTL plus grace)
// they move, and the erasure repair is told the peer is lost too. Before
// that nothing moves. (CI: the one peer in charge of an erasure-coded
// file had never heard from the two peers that died, and repaired
// nothing.)
func TestLoopMovesPinsOffUnheardPeers(t *testing.T) {
	f := &fakeCluster{pins: map[string]api.Pin{}, room: []peer.ID{"a", "b"}}
	f.pins[testkit.Cid(1).Key()] = rfPin(1, time.Time{}, "a", "u")
	f.pins[testkit.Cid(2).Key()] = rfPin(2, time.Time{}, "a", "b")
	l := runLoop(t, f)
	l.Kick()
	time.Sleep(100 * time.Millisecond)
	if p, _ := f.get(testkit.Cid(1)); !slices.Equal(p.Allocations, []peer.ID{"a", "u"}) {
		t.Fatalf("moved off u before unheard peers count: %v", p.Allocations)
	}
	f.mu.Lock()
	f.unheard = map[peer.ID]bool{"u": true}
	f.mu.Unlock()
	l.Kick()
	testkit.WaitFor(t, 5*time.Second, "the replica on the unheard peer moved", func() bool {
		p, _ := f.get(testkit.Cid(1))
		return slices.Equal(p.Allocations, []peer.ID{"a", "b"})
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.erasureLost {
		t.Fatal("the erasure repair was not told the unheard peer is lost")
	}
}

// An erasure repair that could not finish (a shard unreadable for now) is
// tried again at the next tick, though nobody else died or found room (a
// shard repair once waited for a change that never came, CI).
func TestLoopRetriesAnUnfinishedErasureRepair(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeCluster{pins: map[string]api.Pin{}, room: []peer.ID{"a", "b"},
		dead: map[peer.ID]bool{"d": true}, erasureFails: 2}
	cfg := DefaultConfig()
	cfg.Interval = config.Duration(20 * time.Millisecond)
	l := NewLoop(cfg, f)
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.WaitFor(t, 5*time.Second, "three tries of the erasure repair", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.erasureTries >= 3
	})
	time.Sleep(200 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.erasureTries != 3 {
		t.Fatalf("%d tries; once it succeeded (the third), nothing changed and it should not run again", f.erasureTries)
	}
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Interval, c.RebalanceBatch = 0, -1
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "repair.interval") || !strings.Contains(err.Error(), "repair.rebalance_batch") {
		t.Fatalf("%v, want both keys named", err)
	}
}

// runLoop runs a loop over f, ticking hourly (so that only kicks and
// changes wake it), until the test ends.
func runLoop(t *testing.T, f *fakeCluster) *Loop {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := DefaultConfig()
	cfg.Interval = config.Duration(time.Hour)
	l := NewLoop(cfg, f)
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}
