package ecfile

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
)

// ring is a Cluster in memory: one blockstore for every kubo (shards are
// read from it while their peer is alive), a pinset, and eight peers.
type ring struct {
	mu    sync.Mutex
	bs    blockstore.Blockstore
	pins  map[string]api.Pin
	peers []peer.ID
	dead  map[peer.ID]bool
	// stalled: reads of shards held by these peers never return (their
	// kubo cannot find the blocks), until the read's context ends.
	stalled map[peer.ID]bool
}

func newRing() *ring {
	r := &ring{bs: blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore())), pins: map[string]api.Pin{}, dead: map[peer.ID]bool{}}
	for i := range 8 {
		r.peers = append(r.peers, peer.ID(fmt.Sprintf("peer-%d", i)))
	}
	return r
}

func (r *ring) Self() peer.ID { return r.peers[0] }

func (r *ring) ShardPeers(n int, avoid []peer.ID) ([]peer.ID, error) {
	var live, fresh []peer.ID
	for _, p := range r.peers {
		if !r.dead[p] {
			live = append(live, p)
			if !slices.Contains(avoid, p) {
				fresh = append(fresh, p)
			}
		}
	}
	if len(fresh) > 0 {
		live = fresh
	}
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = live[i%len(live)]
	}
	return out, nil
}

type sink struct{ bs blockstore.Blockstore }

func (s sink) BlockPutMany(_ context.Context, bs [][]byte, codec, mhType string) error {
	var c multicodec.Code
	if err := c.Set(codec); err != nil {
		return err
	}
	for _, b := range bs {
		h, err := mh.Sum(b, mh.Names[mhType], -1)
		if err != nil {
			return err
		}
		blk, _ := blocks.NewBlockWithCid(b, cid.NewCidV1(uint64(c), h))
		if err := s.bs.Put(context.Background(), blk); err != nil {
			return err
		}
	}
	return nil
}
func (sink) Close() {}

func (r *ring) Sink([]peer.ID) Sink { return sink{r.bs} }

func (r *ring) Write(_ context.Context, pin *api.Pin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pins[pin.Cid.Key()] = *pin
	return nil
}

func (r *ring) PinGet(_ context.Context, c api.Cid) (api.Pin, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pins[c.Key()]
	if !ok {
		return p, fmt.Errorf("%w: %s", api.ErrNotFound, c)
	}
	return p, nil
}

func (r *ring) Alive(p peer.ID) bool { return !r.dead[p] }

func (r *ring) Cat(ctx context.Context, c api.Cid, holder peer.ID) (io.ReadCloser, error) {
	r.mu.Lock()
	stalled := r.stalled[holder]
	r.mu.Unlock()
	if stalled {
		return stallReader{ctx}, nil
	}
	dag := merkledag.NewDAGService(blockservice.New(r.bs, offline.Exchange(r.bs)))
	n, err := dag.Get(ctx, c.Cid)
	if err != nil {
		return nil, err
	}
	return uio.NewDagReader(ctx, n, dag)
}

type stallReader struct{ ctx context.Context }

func (s stallReader) Read([]byte) (int, error) { <-s.ctx.Done(); return 0, s.ctx.Err() }
func (s stallReader) Close() error             { return nil }

// A shard whose peer's kubo never answers fails the repair after
// ShardIdle, naming the shard, instead of holding the repair for ever.
func TestRepairOfAStalledShardEnds(t *testing.T) {
	defer func(d time.Duration) { ShardIdle = d }(ShardIdle)
	ShardIdle = 200 * time.Millisecond
	ctx := context.Background()
	r := newRing()
	f := New(r)
	data := make([]byte, 1<<20)
	rand.Read(data)
	ap := api.AddParams{DataShards: 4, ParityShards: 2}
	root, err := f.Add(ctx, entries("f", data), ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	_, l, _ := f.Layout(ctx, root)
	holder := func(i int) peer.ID {
		c, _ := api.ParseCid(l.Shards[i])
		p, _ := r.PinGet(ctx, c)
		return p.Allocations[0]
	}
	gone, stalled := holder(5), holder(2)
	r.mu.Lock()
	r.dead[gone] = true
	r.stalled = map[peer.ID]bool{stalled: true}
	r.mu.Unlock()
	done := make(chan api.ECRepair, 1)
	go func() { done <- f.Repair(ctx, root, l, func(p peer.ID) bool { return r.dead[p] }) }()
	select {
	case res := <-done:
		if res.Error == "" || !strings.Contains(res.Error, l.Shards[2]) || len(res.Rebuilt) != 0 {
			t.Fatalf("repair with a stalled shard: %+v; want an error naming shard 2", res)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the repair still waits on the stalled shard")
	}
}

func entries(name string, data []byte) func(func(api.AddEntry, error) bool) {
	return func(yield func(api.AddEntry, error) bool) {
		yield(api.AddEntry{Path: name, Kind: api.EntryFile, Body: bytes.NewReader(data)}, nil)
	}
}

// A file stored as 4+2 shards reads back whole from any 4, and the shards
// of two lost peers are rebuilt onto live peers that hold no other shard.
func TestAddGetRepair(t *testing.T) {
	ctx := context.Background()
	r := newRing()
	f := New(r)
	data := make([]byte, 3<<20+777)
	rand.Read(data)
	ap := api.AddParams{DataShards: 4, ParityShards: 2, PinOptions: api.PinOptions{Name: "movie"}}
	var lines []api.AddedOutput
	root, err := f.Add(ctx, entries("movie.bin", data), ap, adder.DefaultParams(), func(o api.AddedOutput) error {
		lines = append(lines, o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 7 || !lines[6].Cid.Equals(root.Cid) || lines[6].Size != uint64(len(data)) {
		t.Fatalf("reported %+v", lines)
	}
	// The root is the CID ipfs add gives the whole file.
	whole, err := adder.ImportFile(adder.NewSink(ctx, nil), bytes.NewReader(data), adder.DefaultParams())
	if err != nil || !whole.Cid().Equals(root.Cid) {
		t.Fatalf("root %s, the whole file is %v (%v)", root, whole.Cid(), err)
	}
	meta, l, err := f.Layout(ctx, root)
	if err != nil || meta.Type != api.MetaType || l.K != 4 || l.M != 2 {
		t.Fatalf("layout: %+v %+v %v", meta, l, err)
	}
	holder := func(i int) peer.ID {
		c, _ := api.ParseCid(l.Shards[i])
		p, _ := r.PinGet(ctx, c)
		return p.Allocations[0]
	}
	var out bytes.Buffer
	if err := f.Get(ctx, root, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("get: %v, %d bytes back of %d", err, out.Len(), len(data))
	}

	// Two data shards' peers die: the file still reads back, rebuilt.
	r.dead[holder(1)], r.dead[holder(2)] = true, true
	out.Reset()
	if err := f.Get(ctx, root, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("get with two shards lost: %v", err)
	}
	res := f.Repair(ctx, root, l, func(p peer.ID) bool { return r.dead[p] })
	if res.Error != "" || !slices.Equal(res.Rebuilt, []int{1, 2}) {
		t.Fatalf("repair: %+v", res)
	}
	seen := map[peer.ID]bool{}
	for i := range l.Shards {
		h := holder(i)
		if r.dead[h] || seen[h] {
			t.Fatalf("after the repair shard %d is on %s (dead %v, holding another %v)", i, h, r.dead[h], seen[h])
		}
		seen[h] = true
	}

	// Three of six lost is more than the parity: the read says so.
	r2 := newRing()
	f2 := New(r2)
	root2, err := f2.Add(ctx, entries("x", data[:100_000]), ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	_, l2, _ := f2.Layout(ctx, root2)
	for i := 1; i <= 3; i++ { // shard 0 is on this peer, which counts as alive
		c, _ := api.ParseCid(l2.Shards[i])
		p, _ := r2.PinGet(ctx, c)
		r2.dead[p.Allocations[0]] = true
	}
	if err := f2.Get(ctx, root2, io.Discard); err == nil {
		t.Fatal("a file with 3 of 6 shards lost read back")
	}

	// Only one file per add, and not a directory.
	two := func(yield func(api.AddEntry, error) bool) {
		if yield(api.AddEntry{Path: "a", Kind: api.EntryFile, Body: bytes.NewReader([]byte("a"))}, nil) {
			yield(api.AddEntry{Path: "b", Kind: api.EntryFile, Body: bytes.NewReader([]byte("b"))}, nil)
		}
	}
	if _, err := f.Add(ctx, two, ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil }); err == nil {
		t.Fatal("two files in one erasure-coded add were accepted")
	}
}

// Spooling is bounded: an add that would leave the spool's disk under
// MinFree fails with api.ErrNoSpace and leaves nothing in SpoolDir; with
// every spooling slot taken, another add is refused at once
// (api.ErrTooMany). Before, adds spooled to the system's temporary
// directory without limit, and a crash left the files there.
func TestSpoolingIsBounded(t *testing.T) {
	ctx := context.Background()
	f := New(newRing())
	f.SpoolDir = t.TempDir()
	data := make([]byte, 1<<20)
	ap := api.AddParams{DataShards: 2, ParityShards: 1}
	f.MinFree = 1 << 62 // more than any disk has
	_, err := f.Add(ctx, entries("f", data), ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil })
	if !errors.Is(err, api.ErrNoSpace) {
		t.Fatalf("an add past MinFree: %v, want ErrNoSpace", err)
	}
	if left, _ := os.ReadDir(f.SpoolDir); len(left) != 0 {
		t.Fatalf("%d entries left in the spool directory", len(left))
	}
	f.MinFree = 0
	for range spoolsAtOnce {
		f.slots <- struct{}{}
	}
	if _, err := f.Add(ctx, entries("f", data), ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil }); !errors.Is(err, api.ErrTooMany) {
		t.Fatalf("an add with every slot taken: %v, want ErrTooMany", err)
	}
	for range spoolsAtOnce {
		<-f.slots
	}
	if _, err := f.Add(ctx, entries("f", data), ap, adder.DefaultParams(), func(api.AddedOutput) error { return nil }); err != nil {
		t.Fatalf("an add with room: %v", err)
	}
}
