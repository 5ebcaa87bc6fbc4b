package pinning

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/internal/testkit"
)

// pinset is a pinset in a map.
type pinset struct {
	mu   sync.Mutex
	pins map[string]api.Pin
}

func (s *pinset) Get(_ context.Context, c api.Cid) (*api.Pin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[c.Key()]
	if !ok {
		return nil, crdtstate.ErrNotFound
	}
	return &p, nil
}

func (s *pinset) Add(_ context.Context, p *api.Pin) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pins[p.Cid.Key()] = *p
	return nil
}

func (s *pinset) Rm(_ context.Context, c api.Cid) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pins[c.Key()]; !ok {
		return crdtstate.ErrNotFound
	}
	delete(s.pins, c.Key())
	return nil
}

func writer(t *testing.T, key string) (*Writer, *pinset, *[][]peer.ID) {
	set := &pinset{pins: map[string]api.Pin{}}
	var kept [][]peer.ID
	a, b := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	return New(Deps{Cluster: "c", Writer: key, ReplicationMin: 1, ReplicationMax: 2, Pinset: set,
		CheckAllocations: func(ids []peer.ID) error {
			for _, id := range ids {
				if id != a && id != b {
					return api.ErrBadRequest
				}
			}
			return nil
		},
		Allocate: func(pin *api.Pin, current []peer.ID) ([]peer.ID, error) {
			kept = append(kept, current)
			return []peer.ID{a, b}[:pin.ReplicationFactorMax], nil
		}}), set, &kept
}

func pin(i int) api.Pin { return api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1} }

func TestReadOnlyPeerWritesNothing(t *testing.T) {
	w, set, _ := writer(t, "")
	ctx := context.Background()
	if _, err := w.Pin(ctx, pin(1)); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("pin on a read-only peer: %v, want ErrForbidden", err)
	}
	set.Add(ctx, &api.Pin{Cid: testkit.Cid(2)})
	if _, err := w.Unpin(ctx, testkit.Cid(2)); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("unpin on a read-only peer: %v, want ErrForbidden", err)
	}
	if len(set.pins) != 1 {
		t.Fatalf("pinset changed: %v", set.pins)
	}
}

func TestPinFillsInDefaultsAllocationsAndWriter(t *testing.T) {
	w, set, kept := writer(t, "key1")
	ctx := context.Background()
	got, err := w.Pin(ctx, pin(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.ReplicationFactorMin != 1 || got.ReplicationFactorMax != 2 || len(got.Allocations) != 2 || got.Writer != "key1" {
		t.Fatalf("stored %+v: want the cluster's factors, two allocations, the writer", got)
	}
	if set.pins[got.Cid.Key()].Writer != "key1" {
		t.Fatalf("pinset holds %+v", set.pins[got.Cid.Key()])
	}
	// Pinning again keeps the current allocations where it can.
	if _, err := w.Pin(ctx, pin(1)); err != nil {
		t.Fatal(err)
	}
	if len(*kept) != 2 || len((*kept)[1]) != 2 {
		t.Fatalf("allocation was given current %v, want the two of the first pin", *kept)
	}
	// A user allocation to a peer that may not take pins is refused.
	bad := pin(3)
	bad.UserAllocations = []peer.ID{testkit.PeerID(t, 9)}
	if _, err := w.Pin(ctx, bad); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("allocation to a stranger: %v, want ErrBadRequest", err)
	}
	// A pin-update of a CID not in the pinset names it.
	up := pin(4)
	up.PinUpdate = testkit.Cid(5)
	if _, err := w.Pin(ctx, up); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("pin-update from nothing: %v, want ErrBadRequest", err)
	}
}

func TestReplaceAndUnpin(t *testing.T) {
	w, set, _ := writer(t, "key1")
	ctx := context.Background()
	old := pin(1)
	old.Name = "v1"
	if _, err := w.Pin(ctx, old); err != nil {
		t.Fatal(err)
	}
	next := pin(2)
	next.Name = "v2"
	if _, err := w.Replace(ctx, old.Cid, next); err != nil {
		t.Fatal(err)
	}
	if _, ok := set.pins[old.Cid.Key()]; ok {
		t.Fatal("replace kept the old pin")
	}
	if set.pins[next.Cid.Key()].Name != "v2" {
		t.Fatalf("replace stored %+v", set.pins[next.Cid.Key()])
	}
	// Replacing a pin with itself keeps it.
	if _, err := w.Replace(ctx, next.Cid, next); err != nil || len(set.pins) != 1 {
		t.Fatalf("replace with itself: %v, pinset %v", err, set.pins)
	}
	if _, err := w.Unpin(ctx, testkit.Cid(7)); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unpin of a CID not pinned: %v, want ErrNotFound", err)
	}
	if got, err := w.Unpin(ctx, next.Cid); err != nil || got.Name != "v2" || len(set.pins) != 0 {
		t.Fatalf("unpin: %+v %v, pinset %v", got, err, set.pins)
	}
}

// push records what an upload pushed, and to whom.
type push struct {
	to     []peer.ID
	blocks int
	closed bool
}

func (p *push) BlockPutMany(_ context.Context, blocks [][]byte, _, _ string) error {
	p.blocks += len(blocks)
	return nil
}
func (p *push) Close() { p.closed = true }

// Add imports the upload, pushes its blocks to the allocated peers and
// pins its root, named for the file, with those allocations; a read-only
// peer and a wrapped CAR are refused before anything is read.
func TestAddPushesToTheAllocatedPeersAndPins(t *testing.T) {
	w, set, _ := writer(t, "key1")
	var pushed []*push
	w.d.Push = func(to []peer.ID) BlockPush { p := &push{to: to}; pushed = append(pushed, p); return p }
	file := func(yield func(api.AddEntry, error) bool) {
		yield(api.AddEntry{Path: "hello.txt", Kind: api.EntryFile, Body: strings.NewReader("hello, ring")}, nil)
	}
	ctx := context.Background()
	var lines []api.AddedOutput
	ap := api.AddParams{PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}, Chunker: "size-262144", HashFun: "sha2-256", Layout: "balanced"}
	root, err := w.Add(ctx, file, ap,
		func(o api.AddedOutput) error { lines = append(lines, o); return nil })
	if err != nil {
		t.Fatal(err)
	}
	got, ok := set.pins[root.Key()]
	if !ok || got.Name != "hello.txt" || len(got.Allocations) != 2 || got.Writer != "key1" {
		t.Fatalf("pinset holds %+v (present %v): want the root, named, on two peers", got, ok)
	}
	if len(pushed) != 1 || len(pushed[0].to) != 2 || pushed[0].blocks == 0 || !pushed[0].closed {
		t.Fatalf("pushed %+v: want the blocks pushed to the two allocated peers, then closed", pushed)
	}
	if len(lines) == 0 || len(lines[len(lines)-1].Allocations) != 2 {
		t.Fatalf("progress %+v: want lines naming the allocations", lines)
	}
	if _, err := w.Add(ctx, file, api.AddParams{Format: "car", Wrap: true, Chunker: "size-262144", HashFun: "sha2-256", Layout: "balanced"}, nil); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a wrapped CAR: %v, want ErrBadRequest", err)
	}
	ro, _, _ := writer(t, "")
	if _, err := ro.Add(ctx, file, ap, nil); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("add on a read-only peer: %v, want ErrForbidden", err)
	}
}
