package pintracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// fakeIPFS is an in-memory kubo whose pin calls can be made to fail.
type fakeIPFS struct {
	mu       sync.Mutex
	pins     map[string]api.IPFSPinStatus
	failPins int // fail this many pin calls
	calls    int
	updates  int
	delay    time.Duration   // each pin call takes this long
	bad      map[string]bool // CIDs kubo can never pin
	many     int             // grouped pin calls
}

func newFake() *fakeIPFS { return &fakeIPFS{pins: map[string]api.IPFSPinStatus{}} }

func (f *fakeIPFS) Pin(ctx context.Context, c api.Cid, mode api.PinMode, _ func(uint64)) error {
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failPins > 0 || f.bad[c.Key()] {
		f.failPins--
		return errors.New("kubo: block not found")
	}
	f.pins[c.Key()] = api.IPFSPinRecursive
	return nil
}

func (f *fakeIPFS) PinMany(ctx context.Context, cids []api.Cid, mode api.PinMode, _ func(uint64)) error {
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.many++
	for _, c := range cids {
		if f.bad[c.Key()] {
			return errors.New("kubo: block not found")
		}
	}
	if f.failPins > 0 {
		f.failPins--
		return errors.New("kubo: block not found")
	}
	for _, c := range cids {
		f.pins[c.Key()] = api.IPFSPinRecursive
	}
	return nil
}

func (f *fakeIPFS) Unpin(ctx context.Context, c api.Cid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pins, c.Key())
	return nil
}

func (f *fakeIPFS) PinLs(ctx context.Context, typ string, out chan<- api.IPFSPinInfo) error {
	defer close(out)
	f.mu.Lock()
	var list []api.IPFSPinInfo
	for k, st := range f.pins {
		if string(st) == typ {
			c, _ := cid.Decode(k)
			list = append(list, api.IPFSPinInfo{Cid: api.NewCid(c), Type: st})
		}
	}
	f.mu.Unlock()
	for _, p := range list {
		out <- p
	}
	return nil
}

func (f *fakeIPFS) PinLsCid(ctx context.Context, c api.Cid) (api.IPFSPinStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.pins[c.Key()]; ok {
		return st, nil
	}
	return api.IPFSPinUnpinned, nil
}

func (f *fakeIPFS) PinUpdate(ctx context.Context, from, to api.Cid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates++
	f.pins[to.Key()] = api.IPFSPinRecursive
	return nil
}

func (f *fakeIPFS) has(c api.Cid) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pins[c.Key()]
	return ok
}

type pinset struct {
	mu   sync.Mutex
	pins map[string]api.Pin
}

func (s *pinset) get(ctx context.Context, c api.Cid) (*api.Pin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pins[c.Key()]; ok {
		return &p, nil
	}
	return nil, nil
}

// add puts p into the pinset and tells the tracker, as the peer does.
func (s *pinset) add(tr *Tracker, p *api.Pin) {
	s.mu.Lock()
	s.pins[p.Cid.Key()] = *p
	s.mu.Unlock()
	tr.Track(p)
}

func (s *pinset) rm(tr *Tracker, c api.Cid) {
	s.mu.Lock()
	delete(s.pins, c.Key())
	s.mu.Unlock()
	tr.Untrack(c)
}

func (s *pinset) list(ctx context.Context, out chan<- api.Pin) error {
	defer close(out)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pins {
		out <- p
	}
	return nil
}

func mkPin(i int, allocs ...peer.ID) *api.Pin {
	h, _ := mh.Sum(fmt.Appendf(nil, "x%d", i), mh.SHA2_256, -1)
	p := &api.Pin{Cid: api.NewCid(cid.NewCidV1(cid.Raw, h)), Type: api.DataType, Allocations: allocs}
	p.ReplicationFactorMin, p.ReplicationFactorMax = -1, -1
	if len(allocs) > 0 {
		p.ReplicationFactorMin, p.ReplicationFactorMax = 1, 1
	}
	return p
}

const self = peer.ID("self")

func start(t *testing.T, ipfs *fakeIPFS, ps *pinset) *Tracker {
	cfg := DefaultConfig()
	cfg.RetryBackoff = config.Duration(20 * time.Millisecond)
	cfg.RecoverInterval = config.Duration(50 * time.Millisecond)
	cfg.MaxAttempts = 3
	return startCfg(t, cfg, ipfs, ps)
}

func startCfg(t *testing.T, cfg Config, ipfs *fakeIPFS, ps *pinset) *Tracker {
	tr, err := New(cfg, Deps{IPFS: ipfs, Self: self, Pinset: ps.list, Get: ps.get})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	testkit.WaitFor(t, 10*time.Second, "the first recover pass", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.firstPass
	})
	return tr
}

func TestPinUnpinAndRemote(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	mine, remote := mkPin(1), mkPin(2, peer.ID("other"))
	for _, p := range []*api.Pin{mine, remote} {
		ps.add(tr, p)
	}
	testkit.WaitFor(t, 10*time.Second, "pinned", func() bool { return tr.Status(ctx, mine.Cid).Status == api.StatusPinned })
	if st := tr.Status(ctx, remote.Cid).Status; st != api.StatusRemote {
		t.Fatalf("remote pin status %s", st)
	}
	if ipfs.has(remote.Cid) || !ipfs.has(mine.Cid) {
		t.Fatal("kubo holds the wrong pins")
	}
	ps.rm(tr, mine.Cid)
	testkit.WaitFor(t, 10*time.Second, "unpinned", func() bool { return !ipfs.has(mine.Cid) })
	testkit.WaitFor(t, 10*time.Second, "entry gone", func() bool { return tr.Status(ctx, mine.Cid).Status == api.StatusUnpinned })
	if n := len(statusAll(t, tr, api.StatusFilter{api.StatusRemote})); n != 1 {
		t.Fatalf("filter remote gave %d", n)
	}
	if n := len(statusAll(t, tr, nil)); n != 1 {
		t.Fatalf("status of everything gave %d, want the one remote pin", n)
	}
	// Nothing is kept for settled pins.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.ops) != 0 {
		t.Fatalf("%d operations kept after everything settled", len(tr.ops))
	}
}

var ctx = context.Background()

func statusAll(t *testing.T, tr *Tracker, f api.StatusFilter) []api.PinInfo {
	t.Helper()
	var out []api.PinInfo
	if err := tr.StatusAll(ctx, f, func(pi api.PinInfo) error { out = append(out, pi); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRetriesThenErrorThenRecover(t *testing.T) {
	ipfs := newFake()
	ipfs.failPins = 100
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.RetryBackoff = config.Duration(20 * time.Millisecond)
	cfg.MaxAttempts = 3
	tr := startCfg(t, cfg, ipfs, ps) // no recover pass during the test
	p := mkPin(1)
	ps.add(tr, p)
	testkit.WaitFor(t, 10*time.Second, "3 attempts", func() bool {
		pi := tr.Status(ctx, p.Cid)
		return pi.Status == api.StatusPinError && pi.AttemptCount == 3
	})
	pi := tr.Status(ctx, p.Cid)
	if pi.Error == "" {
		t.Fatal("pin_error carries no error text")
	}
	ipfs.mu.Lock()
	ipfs.failPins = 0
	ipfs.mu.Unlock()
	tr.Recover(ctx, p.Cid)
	testkit.WaitFor(t, 10*time.Second, "pinned after recover", func() bool { return tr.Status(ctx, p.Cid).Status == api.StatusPinned })
}

func TestRecoverPassRepinsWhatKuboLost(t *testing.T) {
	ipfs := newFake()
	p := mkPin(7)
	ps := &pinset{pins: map[string]api.Pin{p.Cid.Key(): *p}}
	tr := start(t, ipfs, ps) // the first reconcile finds the pin and queues it
	testkit.WaitFor(t, 10*time.Second, "pinned", func() bool { return tr.Status(ctx, p.Cid).Status == api.StatusPinned })
	ipfs.mu.Lock()
	before := ipfs.calls
	ipfs.mu.Unlock()
	ipfs.Unpin(context.Background(), p.Cid) // behind the cluster's back
	testkit.WaitFor(t, 10*time.Second, "re-pinned", func() bool { return ipfs.has(p.Cid) })
	testkit.WaitFor(t, 10*time.Second, "status pinned", func() bool { return tr.Status(ctx, p.Cid).Status == api.StatusPinned })
	ipfs.mu.Lock()
	defer ipfs.mu.Unlock()
	if ipfs.calls <= before {
		t.Fatal("no pin call was made")
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	cfg := DefaultConfig()
	ps := &pinset{}
	tr, _ := New(cfg, Deps{IPFS: newFake(), Pinset: ps.list, Get: ps.get})
	for attempt, want := range map[int]time.Duration{1: 2 * time.Second, 2: 4 * time.Second, 3: 8 * time.Second, 20: 2 * time.Minute} {
		if got := tr.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestPinUpdateUsesKuboPinUpdate(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	from, to := mkPin(1), mkPin(2)
	ps.add(tr, from)
	testkit.WaitFor(t, 10*time.Second, "from pinned", func() bool { return ipfs.has(from.Cid) && tr.Status(ctx, from.Cid).Status == api.StatusPinned })
	to.PinUpdate = from.Cid
	ps.add(tr, to)
	testkit.WaitFor(t, 10*time.Second, "to pinned", func() bool { return ipfs.has(to.Cid) && tr.Status(ctx, to.Cid).Status == api.StatusPinned })
	ipfs.mu.Lock()
	defer ipfs.mu.Unlock()
	if ipfs.updates != 1 || ipfs.calls != 1 {
		t.Fatalf("pin/update calls %d, pin/add calls %d; want 1 and 1", ipfs.updates, ipfs.calls)
	}
}

// With more work than max_queue, the tracker keeps at most max_queue
// operations, reports unqueued pins truthfully, and the recover pass picks
// up the rest as the queue drains: every pin ends up in kubo.
func TestMaxQueueBoundsMemoryAndLosesNothing(t *testing.T) {
	ipfs := newFake()
	ipfs.delay = 2 * time.Millisecond
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.MaxQueue = 20
	cfg.Concurrency = 2
	cfg.RecoverInterval = config.Duration(time.Hour) // only the drain kick runs it
	tr := startCfg(t, cfg, ipfs, ps)
	const n = 200
	for i := range n {
		ps.add(tr, mkPin(i))
	}
	tr.mu.Lock()
	if len(tr.ops) > cfg.MaxQueue {
		t.Errorf("%d operations outstanding, max_queue %d", len(tr.ops), cfg.MaxQueue)
	}
	tr.mu.Unlock()
	last := mkPin(n - 1)
	if st := tr.Status(ctx, last.Cid).Status; st != api.StatusPinQueued {
		t.Errorf("an unqueued pin reports %s, want pin_queued", st)
	}
	testkit.WaitFor(t, 10*time.Second, "all pinned", func() bool {
		ipfs.mu.Lock()
		defer ipfs.mu.Unlock()
		return len(ipfs.pins) == n
	})
	testkit.WaitFor(t, 10*time.Second, "status pinned", func() bool { return tr.Status(ctx, last.Cid).Status == api.StatusPinned })
}

// A pin of the pinset allocated elsewhere that kubo still holds (an
// earlier allocation) is unpinned by the recover pass.
func TestRecoverUnpinsWhatMovedAway(t *testing.T) {
	ipfs := newFake()
	p := mkPin(3, peer.ID("other"))
	ipfs.Pin(ctx, p.Cid, api.PinModeRecursive, nil)
	ps := &pinset{pins: map[string]api.Pin{p.Cid.Key(): *p}}
	tr := start(t, ipfs, ps)
	testkit.WaitFor(t, 10*time.Second, "unpinned", func() bool { return !ipfs.has(p.Cid) })
	testkit.WaitFor(t, 10*time.Second, "remote", func() bool { return tr.Status(ctx, p.Cid).Status == api.StatusRemote })
}

// Pins go to kubo in groups; a CID that cannot be pinned fails alone,
// and the rest of its group is pinned.
func TestPinsAreGroupedAndABadOneFailsAlone(t *testing.T) {
	ipfs := newFake()
	ipfs.delay = 20 * time.Millisecond // let the queue fill behind the first call
	bad := mkPin(17)
	ipfs.bad = map[string]bool{bad.Cid.Key(): true}
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	cfg.MaxAttempts = 1
	cfg.RecoverInterval = config.Duration(time.Hour)
	tr := startCfg(t, cfg, ipfs, ps)
	const n = 100
	for i := range n {
		ps.add(tr, mkPin(i))
	}
	testkit.WaitFor(t, 10*time.Second, "the bad pin failed", func() bool { return tr.Status(ctx, bad.Cid).Status == api.StatusPinError })
	testkit.WaitFor(t, 10*time.Second, "the others pinned", func() bool {
		ipfs.mu.Lock()
		defer ipfs.mu.Unlock()
		return len(ipfs.pins) == n-1
	})
	ipfs.mu.Lock()
	defer ipfs.mu.Unlock()
	if ipfs.many == 0 || ipfs.many+ipfs.calls > n/4 {
		t.Fatalf("%d grouped and %d single pin calls for %d pins: not grouped", ipfs.many, ipfs.calls, n)
	}
}

// Status checks a settled pin with kubo; recover pins it again at once,
// without waiting for the recover pass.
func TestStatusSeesWhatKuboLostAndRecoverRepins(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.RecoverInterval = config.Duration(time.Hour)
	tr := startCfg(t, cfg, ipfs, ps)
	p := mkPin(5)
	ps.add(tr, p)
	testkit.WaitFor(t, 10*time.Second, "pinned, nothing pending", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return ipfs.has(p.Cid) && len(tr.ops) == 0 && !tr.backlog()
	})
	ipfs.Unpin(ctx, p.Cid) // behind the cluster's back
	if st := tr.Status(ctx, p.Cid).Status; st != api.StatusUnexpectedlyUnpinned {
		t.Fatalf("status after kubo lost the pin: %s", st)
	}
	if all := statusAll(t, tr, api.StatusFilter{api.StatusUnexpectedlyUnpinned}); len(all) != 1 {
		t.Fatalf("status of all lists %d unexpectedly_unpinned pins, want 1", len(all))
	}
	tr.Recover(ctx, p.Cid)
	testkit.WaitFor(t, 10*time.Second, "pinned again", func() bool { return ipfs.has(p.Cid) && tr.Status(ctx, p.Cid).Status == api.StatusPinned })
}

// go-ds-crdt calls its put hook before the write is committed: a pin
// Tracked before the pinset shows it must still be pinned.
func TestTrackBeforeThePinsetShowsIt(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	p := mkPin(9)
	tr.Track(p) // the pinset does not have it (yet)
	testkit.WaitFor(t, 10*time.Second, "pinned in kubo", func() bool { return ipfs.has(p.Cid) })
}

// A pin re-allocated away from this peer is unpinned when the update
// arrives, not at the next recover pass.
func TestReallocationAwayUnpinsAtOnce(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.RecoverInterval = config.Duration(time.Hour) // no recover pass helps
	tr := startCfg(t, cfg, ipfs, ps)
	p := mkPin(4, self)
	p.Version = 1
	ps.add(tr, p)
	testkit.WaitFor(t, 10*time.Second, "pinned here", func() bool { return ipfs.has(p.Cid) })
	moved := *p
	moved.Allocations, moved.Version = []peer.ID{"other"}, 2
	ps.add(tr, &moved)
	testkit.WaitFor(t, 10*time.Second, "unpinned here", func() bool { return !ipfs.has(p.Cid) })
	testkit.WaitFor(t, 10*time.Second, "remote", func() bool { return tr.Status(ctx, p.Cid).Status == api.StatusRemote })
	// A new pin allocated elsewhere costs no kubo call.
	other := mkPin(5, peer.ID("other"))
	other.Version = 1
	ps.add(tr, other)
	tr.mu.Lock()
	n := len(tr.ops)
	tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d operations for a remote pin", n)
	}
}

// Pins that arrive one by one, as acknowledged writes and merged deltas
// bring them, reach kubo in a few grouped calls, not one call each.
func TestPinsArrivingOneByOneAreGathered(t *testing.T) {
	for _, batchWait := range []time.Duration{20 * time.Millisecond, 0} {
		ipfs := newFake()
		ps := &pinset{pins: map[string]api.Pin{}}
		cfg := DefaultConfig()
		cfg.RecoverInterval = config.Duration(time.Hour)
		cfg.PinBatchWait = config.Duration(batchWait)
		tr := startCfg(t, cfg, ipfs, ps)
		const n = 200
		for i := range n {
			ps.add(tr, mkPin(i))
			time.Sleep(100 * time.Microsecond)
		}
		testkit.WaitFor(t, 10*time.Second, "every pin pinned", func() bool {
			ipfs.mu.Lock()
			defer ipfs.mu.Unlock()
			return len(ipfs.pins) == n
		})
		ipfs.mu.Lock()
		calls := ipfs.many + ipfs.calls
		ipfs.mu.Unlock()
		t.Logf("pin_batch_wait %s: %d kubo calls for %d pins", batchWait, calls, n)
		if batchWait > 0 && calls > n/10 {
			t.Fatalf("pin_batch_wait %s: %d kubo calls for %d pins arriving one by one: not gathered", batchWait, calls, n)
		}
		tr.Close()
	}
}

// A recover pass lists kubo's pins before it reads the pinset: a pin
// tracked and pinned in between is not taken for one kubo lost (pinned
// again, and marked unexpectedly_unpinned meanwhile).
func TestRecoverPassKnowsWhatSettledSinceItListedKubo(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	var gated atomic.Bool
	listing, gate := make(chan struct{}), make(chan struct{})
	cfg := DefaultConfig()
	cfg.RecoverInterval = config.Duration(time.Hour)
	tr, err := New(cfg, Deps{IPFS: ipfs, Self: self, Get: ps.get,
		Pinset: func(ctx context.Context, out chan<- api.Pin) error {
			if gated.Load() {
				listing <- struct{}{} // kubo is listed: hold the pass here
				<-gate
			}
			return ps.list(ctx, out)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	testkit.WaitFor(t, 10*time.Second, "the first recover pass", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.firstPass
	})

	gated.Store(true)
	passed := make(chan error, 1)
	go func() { passed <- tr.RecoverAll(ctx) }()
	<-listing
	p := mkPin(1)
	ps.add(tr, p) // pinned while the pass waits
	testkit.WaitFor(t, 10*time.Second, "the new pin pinned", func() bool {
		_, queued := tr.Counts()
		return queued == 0 && ipfs.has(p.Cid)
	})
	ipfs.mu.Lock()
	pins := ipfs.many + ipfs.calls
	ipfs.mu.Unlock()
	close(gate)
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the pass's work done", func() bool { _, queued := tr.Counts(); return queued == 0 })
	ipfs.mu.Lock()
	after := ipfs.many + ipfs.calls
	ipfs.mu.Unlock()
	if after != pins {
		t.Fatalf("the pass pinned it again: %d pin calls, were %d", after, pins)
	}
	if st := tr.Status(ctx, p.Cid).Status; st != api.StatusPinned {
		t.Fatalf("the pin made during the pass: %s", st)
	}
}

// The pinset shows a write once it is journaled, the tracker hears of it
// once it is acknowledged: a later pass that finds a pin written just now
// missing from kubo leaves it to Track instead of calling it lost, while an
// older one missing is lost and pinned again.
func TestRecoverPassLeavesAPinWrittenJustNowToTrack(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	cfg := DefaultConfig()
	cfg.RecoverInterval = config.Duration(time.Hour)
	tr := startCfg(t, cfg, ipfs, ps) // the first pass is done
	young, old := mkPin(1), mkPin(2)
	young.Timestamp = time.Now()
	old.Timestamp = time.Now().Add(-2 * youngPin)
	ps.mu.Lock()
	ps.pins[young.Cid.Key()], ps.pins[old.Cid.Key()] = *young, *old // not tracked yet
	ps.mu.Unlock()
	if err := tr.RecoverAll(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the old pin pinned again", func() bool { return ipfs.has(old.Cid) })
	testkit.WaitFor(t, 10*time.Second, "the pass's work done", func() bool { _, queued := tr.Counts(); return queued == 0 })
	if ipfs.has(young.Cid) {
		t.Fatal("the pass pinned the pin written just now (the tracker had not heard of it yet)")
	}
	tr.Track(young) // its acknowledgement
	testkit.WaitFor(t, 10*time.Second, "the young pin pinned by Track", func() bool { return ipfs.has(young.Cid) })
}

// Absorbed is the latest write stamp of a pin allocated here that Track
// took in, whether it queued work or not; pins allocated elsewhere and
// older stamps arriving late do not move it.
func TestAbsorbedFollowsPinsAllocatedHere(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	if got := tr.Absorbed(); got != 0 {
		t.Fatalf("before any pin: %d", got)
	}
	t0 := time.Now()
	mine, later, elsewhere, late := mkPin(1, self), mkPin(2), mkPin(3, peer.ID("other")), mkPin(4, self)
	mine.Timestamp, later.Timestamp = t0, t0.Add(time.Second)
	elsewhere.Timestamp, late.Timestamp = t0.Add(time.Hour), t0.Add(-time.Minute)
	for _, c := range []struct {
		p    *api.Pin
		want time.Time
	}{{mine, t0}, {later, t0.Add(time.Second)}, {elsewhere, t0.Add(time.Second)}, {late, t0.Add(time.Second)}} {
		ps.add(tr, c.p)
		if got := tr.Absorbed(); got != c.want.UnixNano() {
			t.Fatalf("after the pin stamped %v: absorbed %v, want %v", c.p.Timestamp, time.Unix(0, got), c.want)
		}
	}
}
