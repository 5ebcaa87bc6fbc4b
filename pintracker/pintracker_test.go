package pintracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

// fakeIPFS is an in-memory kubo whose pin calls can be made to fail.
type fakeIPFS struct {
	mu       sync.Mutex
	pins     map[string]api.IPFSPinStatus
	failPins int // fail this many pin calls
	calls    int
	updates  int
}

func newFake() *fakeIPFS { return &fakeIPFS{pins: map[string]api.IPFSPinStatus{}} }

func (f *fakeIPFS) Pin(ctx context.Context, c api.Cid, mode api.PinMode, _ func(uint64)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failPins > 0 {
		f.failPins--
		return errors.New("kubo: block not found")
	}
	f.pins[c.Key()] = api.IPFSPinRecursive
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const self = peer.ID("self")

func start(t *testing.T, ipfs *fakeIPFS, ps *pinset) *Tracker {
	cfg := DefaultConfig()
	cfg.RetryBackoff = config.Duration(20 * time.Millisecond)
	cfg.RecoverInterval = config.Duration(50 * time.Millisecond)
	cfg.MaxAttempts = 3
	tr, err := New(cfg, Deps{IPFS: ipfs, Self: self, Pinset: ps.list})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestPinUnpinAndRemote(t *testing.T) {
	ipfs := newFake()
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	mine, remote := mkPin(1), mkPin(2, peer.ID("other"))
	for _, p := range []*api.Pin{mine, remote} {
		ps.pins[p.Cid.Key()] = *p
		tr.Track(p)
	}
	waitFor(t, "pinned", func() bool { return tr.Status(mine.Cid).Status == api.StatusPinned })
	if st := tr.Status(remote.Cid).Status; st != api.StatusRemote {
		t.Fatalf("remote pin status %s", st)
	}
	if ipfs.has(remote.Cid) || !ipfs.has(mine.Cid) {
		t.Fatal("kubo holds the wrong pins")
	}
	ps.mu.Lock()
	delete(ps.pins, mine.Cid.Key())
	ps.mu.Unlock()
	tr.Untrack(mine.Cid)
	waitFor(t, "unpinned", func() bool { return !ipfs.has(mine.Cid) })
	waitFor(t, "entry gone", func() bool { return tr.Status(mine.Cid).Status == api.StatusUnpinned })
	if n := len(tr.StatusAll(api.StatusFilter{api.StatusRemote})); n != 1 {
		t.Fatalf("filter remote gave %d", n)
	}
}

func TestRetriesThenErrorThenRecover(t *testing.T) {
	ipfs := newFake()
	ipfs.failPins = 100
	ps := &pinset{pins: map[string]api.Pin{}}
	tr := start(t, ipfs, ps)
	p := mkPin(1)
	tr.Track(p)
	waitFor(t, "3 attempts", func() bool {
		pi := tr.Status(p.Cid)
		return pi.Status == api.StatusPinError && pi.AttemptCount == 3
	})
	pi := tr.Status(p.Cid)
	if pi.Error == "" {
		t.Fatal("pin_error carries no error text")
	}
	ipfs.mu.Lock()
	ipfs.failPins = 0
	ipfs.mu.Unlock()
	tr.Recover(p.Cid)
	waitFor(t, "pinned after recover", func() bool { return tr.Status(p.Cid).Status == api.StatusPinned })
}

func TestRecoverPassRepinsWhatKuboLost(t *testing.T) {
	ipfs := newFake()
	p := mkPin(7)
	ps := &pinset{pins: map[string]api.Pin{p.Cid.Key(): *p}}
	tr := start(t, ipfs, ps) // the first reconcile finds the pin and queues it
	waitFor(t, "pinned", func() bool { return tr.Status(p.Cid).Status == api.StatusPinned })
	before := ipfs.calls
	ipfs.Unpin(context.Background(), p.Cid) // behind the cluster's back
	waitFor(t, "re-pinned", func() bool { return ipfs.has(p.Cid) })
	waitFor(t, "status pinned", func() bool { return tr.Status(p.Cid).Status == api.StatusPinned })
	if ipfs.calls <= before {
		t.Fatal("no pin call was made")
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	cfg := DefaultConfig()
	tr, _ := New(cfg, Deps{IPFS: newFake(), Pinset: (&pinset{}).list})
	for attempt, want := range map[int]time.Duration{1: 2 * time.Second, 2: 4 * time.Second, 3: 8 * time.Second, 20: 2 * time.Minute} {
		if got := tr.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestPinUpdateUsesKuboPinUpdate(t *testing.T) {
	ipfs := newFake()
	tr := start(t, ipfs, &pinset{pins: map[string]api.Pin{}})
	from, to := mkPin(1), mkPin(2)
	tr.Track(from)
	waitFor(t, "from pinned", func() bool { return tr.Status(from.Cid).Status == api.StatusPinned })
	to.PinUpdate = from.Cid
	tr.Track(to)
	waitFor(t, "to pinned", func() bool { return tr.Status(to.Cid).Status == api.StatusPinned })
	ipfs.mu.Lock()
	defer ipfs.mu.Unlock()
	if ipfs.updates != 1 || ipfs.calls != 1 {
		t.Fatalf("pin/update calls %d, pin/add calls %d; want 1 and 1", ipfs.updates, ipfs.calls)
	}
}
