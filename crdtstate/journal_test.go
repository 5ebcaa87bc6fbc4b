package crdtstate

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-datastore/query"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// listAll returns the pinset as the listing shows it, by CID string.
func listAll(t *testing.T, s *State) map[string]api.Pin {
	t.Helper()
	out := make(chan api.Pin)
	errc := make(chan error, 1)
	go func() { errc <- s.List(context.Background(), out) }()
	m := map[string]api.Pin{}
	for p := range out {
		if _, dup := m[p.Cid.String()]; dup {
			t.Fatalf("%s listed twice", p.Cid)
		}
		m[p.Cid.String()] = p
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return m
}

// Unpacked changes are acknowledged, visible to every read, and packed
// when the state closes.
func TestUnpackedChangesAreVisible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.BatchAge = config.Duration(time.Hour) // nothing packs until Close
	s, done := openStateCfg(t, dir, cfg, nil)
	for i := range 10 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{2, 7} {
		if err := s.Rm(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Rm(ctx, testkit.Cid(2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing an unpacked removal: %v, want ErrNotFound", err)
	}
	p := testPin(t, 4)
	p.Name = "renamed"
	if err := s.Add(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := s.Unpacked(); n != 10 {
		t.Fatalf("%d changes unpacked, want 10 (nothing packed yet)", n)
	}
	got, err := s.Get(ctx, testkit.Cid(4))
	if err != nil || got.Name != "renamed" || got.Version != 2 {
		t.Fatalf("Get = %+v, %v; want the renamed record at version 2", got, err)
	}
	if has, _ := s.Has(ctx, testkit.Cid(7)); has {
		t.Fatal("Has reports a removed pin")
	}
	if _, err := s.Get(ctx, testkit.Cid(7)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a removed pin: %v", err)
	}
	listed := listAll(t, s)
	if len(listed) != 8 || listed[testkit.Cid(4).String()].Name != "renamed" {
		t.Fatalf("listing has %d pins (want 8) or misses the rename", len(listed))
	}
	before, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done() // packs

	s, done = openState(t, dir, nil)
	defer done()
	if n := s.Unpacked(); n != 0 {
		t.Fatalf("%d changes left in the journal after a clean close", n)
	}
	after, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("digest changed across packing: %+v, then %+v", before, after)
	}
}

// Journal entries left by a crash are replayed into the CRDT on open;
// entries at or below the watermark were packed already and are dropped.
func TestJournalReplay(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, done := openState(t, dir, nil)
	if err := s.Add(ctx, testPin(t, 1)); err != nil {
		t.Fatal(err)
	}
	done()

	// Write what a crash between journaling and packing leaves behind.
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := &State{deps: Deps{Store: store, Namespace: "/pinring/test/state"}}
	put := func(seq uint64, o *op) {
		if err := store.Put(ctx, j.journalKey(seq), encodeJournal(o)); err != nil {
			t.Fatal(err)
		}
	}
	mark, _ := store.Get(ctx, j.watermarkKey())
	top := binary.BigEndian.Uint64(mark)
	p2, p3 := testPin(t, 2), testPin(t, 3)
	p2.Version, p3.Version = 1, 1
	put(top, &op{pin: testPin(t, 9), cid: testkit.Cid(9)}) // already packed
	put(top+1, &op{pin: p2, cid: p2.Cid})
	put(top+2, &op{pin: p3, cid: p3.Cid})
	put(top+3, &op{cid: testkit.Cid(1)})
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	s, done = openState(t, dir, nil)
	defer done()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	packed := map[string]bool{}
	if err := s.eachViaCRDT(ctx, func(k string, _ []byte) error { packed[k] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{pinKey(testkit.Cid(2)).String(): true, pinKey(testkit.Cid(3)).String(): true}
	if len(packed) != len(want) {
		t.Fatalf("CRDT after replay holds %v, want %v", packed, want)
	}
	for k := range want {
		if !packed[k] {
			t.Fatalf("CRDT after replay holds %v, want %v", packed, want)
		}
	}
	if s.seq != top+3 {
		t.Fatalf("sequence resumes at %d, want %d", s.seq, top+3)
	}
	// Those entries were written by a version that journaled in Badger:
	// they are in the journal files now, and gone from Badger.
	res, err := s.deps.Store.Query(ctx, query.Query{Prefix: "/pinring/test/state/journal/", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := res.Rest(); len(left) != 0 {
		t.Fatalf("%d journal entries left in Badger", len(left))
	}
	if len(segments(t, s.deps.JournalDir)) == 0 {
		t.Fatal("no journal segment after moving Badger's entries")
	}
}
