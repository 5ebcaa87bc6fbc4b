package crdtstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

func testPin(t testing.TB, i int) *api.Pin {
	return &api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: fmt.Sprint("p", i)}}
}

func openState(t testing.TB, dir string, onChange func(api.Cid, *api.Pin)) (*State, func()) {
	return openStateCfg(t, dir, DefaultConfig(), onChange)
}

func openStateCfg(t testing.TB, dir string, cfg Config, onChange func(api.Cid, *api.Pin)) (*State, func()) {
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, Deps{Store: store, Namespace: "/pinring/test/state", JournalDir: JournalDir(dir, "/pinring/test/state"), OnChange: onChange})
	if err != nil {
		t.Fatal(err)
	}
	return s, func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	pid, _ := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	p := testPin(t, 1)
	p.Allocations = []peer.ID{pid}
	p.UserAllocations = []peer.ID{pid}
	p.Mode = api.PinModeDirect
	p.MaxDepth = 0
	p.ReplicationFactorMin, p.ReplicationFactorMax = 2, 3
	p.Metadata = map[string]string{"b": "2", "a": "1"}
	p.ExpireAt = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	p.Timestamp = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	p.Origins = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001/p2p/" + pid.String())}
	p.Reference = testkit.Cid(2)
	p.PinUpdate = testkit.Cid(3)
	p.Version, p.Writer = 7, "key1"

	b := EncodePin(p)
	got, err := DecodePin(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(p) || got.Version != 7 || got.Writer != "key1" || !got.Timestamp.Equal(p.Timestamp) {
		t.Fatalf("round trip changed the pin:\n%+v\n%+v", p, got)
	}
	if !bytes.Equal(EncodePin(got), b) {
		t.Fatal("re-encoding is not byte-identical")
	}
}

func TestCodecKeepsUnknownFields(t *testing.T) {
	b := EncodePin(testPin(t, 1))
	// A newer peer's field 99 (string) and 100 (varint).
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendString(b, "future")
	b = protowire.AppendTag(b, 100, protowire.VarintType)
	b = protowire.AppendVarint(b, 42)
	p, err := DecodePin(b)
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "renamed by an old peer"
	p2, err := DecodePin(EncodePin(p))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p2.Unknown, p.Unknown) || len(p.Unknown) == 0 {
		t.Fatalf("unknown fields lost: %x vs %x", p2.Unknown, p.Unknown)
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0xff}, {0x12, 0x05, 1}, EncodePin(testPin(t, 1))[:5]} {
		if _, err := DecodePin(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodePin(%x) = %v, want ErrCorrupt", b, err)
		}
	}
}

func TestAddGetRmList(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	changes := map[string]bool{}
	calls := 0
	s, done := openState(t, t.TempDir(), func(c api.Cid, p *api.Pin) {
		mu.Lock()
		changes[c.Key()] = p != nil
		calls++
		mu.Unlock()
	})
	defer done()

	for i := range 10 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Get(ctx, testkit.Cid(3))
	if err != nil || p.Name != "p3" || p.Version != 1 {
		t.Fatalf("Get = %+v, %v", p, err)
	}
	// CIDv0 and v1 of the same hash are the same pin.
	pb := testPin(t, 100)
	pb.Cid = api.NewCid(cid.NewCidV1(cid.DagProtobuf, pb.Cid.Hash()))
	if err := s.Add(ctx, pb); err != nil {
		t.Fatal(err)
	}
	v0 := api.NewCid(cid.NewCidV0(pb.Cid.Hash()))
	if ok, _ := s.Has(ctx, v0); !ok {
		t.Fatal("CIDv0 form of a CIDv1 dag-pb pin not found")
	}
	if err := s.Rm(ctx, v0); err != nil {
		t.Fatal(err)
	}
	// Re-adding bumps the version.
	if err := s.Add(ctx, testPin(t, 3)); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Get(ctx, testkit.Cid(3)); p.Version != 2 {
		t.Fatalf("version after re-add = %d", p.Version)
	}
	if err := s.Rm(ctx, testkit.Cid(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Rm(ctx, testkit.Cid(4)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Rm = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, testkit.Cid(4)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get removed = %v", err)
	}
	out := make(chan api.Pin)
	listed := make(chan int)
	go func() {
		n := 0
		for range out {
			n++
		}
		listed <- n
	}()
	if err := s.List(ctx, out); err != nil {
		t.Fatal(err)
	}
	if n := <-listed; n != 9 {
		t.Fatalf("List gave %d pins, want 9", n)
	}
	if d, _ := s.Digest(ctx); d.Pins != 9 {
		t.Fatalf("digest counts %d pins", d.Pins)
	}
	// OnChange reports every local change when it is acknowledged, and
	// not again when it is packed.
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 11 || changes[testkit.Cid(4).Key()] || !changes[testkit.Cid(3).Key()] {
		t.Fatalf("OnChange saw %v", changes)
	}
	if calls != 14 { // 12 adds, 2 removals
		t.Fatalf("OnChange called %d times for 14 changes", calls)
	}
	if err := s.Add(ctx, &api.Pin{}); !errors.Is(err, api.ErrBadPin) {
		t.Fatalf("Add of an empty pin = %v", err)
	}
}

func TestConcurrentWritesAreBatchedAndSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, done := openState(t, dir, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Add(ctx, testPin(t, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	d1, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	heads := s.crdt.InternalStats(ctx).MaxHeight
	if heads >= 500 {
		t.Errorf("500 concurrent adds made %d deltas: no batching", heads)
	}
	done()

	s2, done2 := openState(t, dir, nil)
	defer done2()
	d2, err := s2.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || d2.Pins != 500 {
		t.Fatalf("after reopen: %+v, before: %+v", d2, d1)
	}
}

func TestDigestIsOrderIndependent(t *testing.T) {
	ctx := context.Background()
	a, doneA := openState(t, t.TempDir(), nil)
	defer doneA()
	b, doneB := openState(t, t.TempDir(), nil)
	defer doneB()
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		p := testPin(t, i)
		p.Timestamp = fixed
		if err := a.Add(ctx, p); err != nil {
			t.Fatal(err)
		}
		q := testPin(t, 19-i)
		q.Timestamp = fixed
		if err := b.Add(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := a.Digest(ctx)
	if sorted, _ := a.sortedDigest(ctx); sorted != da {
		t.Fatalf("streamed digest %+v differs from the sorted one %+v", da, sorted)
	}
	db, _ := b.Digest(ctx)
	if da != db {
		t.Fatalf("digests differ: %v %v", da, db)
	}
	if err := b.Rm(ctx, testkit.Cid(0)); err != nil {
		t.Fatal(err)
	}
	if db2, _ := b.Digest(ctx); db2 == da {
		t.Fatal("digest did not change after a removal")
	}
}

func TestEachMatchesCRDTQuery(t *testing.T) {
	ctx := context.Background()
	s, done := openState(t, t.TempDir(), nil)
	defer done()
	for i := range 50 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := s.Rm(ctx, testkit.Cid(i*3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(ctx, testPin(t, 3)); err != nil { // re-added after removal
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	collect := func(each func(context.Context, func(string, []byte) error) error) map[string]string {
		m := map[string]string{}
		if err := each(ctx, func(k string, v []byte) error { m[k] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	direct, viaCRDT := collect(s.each), collect(s.eachViaCRDT)
	if len(direct) != 41 || len(direct) != len(viaCRDT) {
		t.Fatalf("direct listing has %d entries, crdt.Query %d, want 41", len(direct), len(viaCRDT))
	}
	for k, v := range viaCRDT {
		if direct[k] != v {
			t.Fatalf("entry %s differs", k)
		}
	}
}
