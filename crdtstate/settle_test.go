package crdtstate

import (
	"context"
	"fmt"
	"testing"

	badgerdb "github.com/dgraph-io/badger/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/pinring/pinring/internal/testkit"
)

// A store whose data is all dead but that nobody writes to keeps its
// value log (Badger collects only files older than its last memtable
// flush, and a quiet store never flushes); SettleStore gives the space
// back.
func TestSettleStoreGivesBackAQuietStoresSpace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	value := make([]byte, 4<<10) // kept in the value log, not the tables
	const n = 12_000             // ~47 MiB: three value log files
	for i := range n {
		if err := store.Put(ctx, ds.NewKey(fmt.Sprintf("/dead/%06d", i)), value); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := store.Delete(ctx, ds.NewKey(fmt.Sprintf("/dead/%06d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Put(ctx, ds.NewKey("/live"), value); err != nil {
		t.Fatal(err)
	}
	full := diskUsage(t, dir)
	CollectValueLog(ctx, store) // what the periodic collection does
	collected := diskUsage(t, dir)
	if err := SettleStore(ctx, store); err != nil {
		t.Fatal(err)
	}
	settled := diskUsage(t, dir)
	t.Logf("store: %.1f MiB written, %.1f MiB after a collection, %.1f MiB settled", mib(full), mib(collected), mib(settled))
	if settled > 20<<20 {
		t.Fatalf("the settled store holds %.1f MiB of a 4 KiB live value (%.1f MiB before)", mib(settled), mib(full))
	}
	if v, err := store.Get(ctx, ds.NewKey("/live")); err != nil || len(v) != len(value) {
		t.Fatalf("the live value after settling: %d bytes, %v", len(v), err)
	}
}

// A quiet writer's journal keeps no segment once everything in it is
// packed (a segment is preallocated whole: 8 MiB of mostly zeros), and
// the next write starts one and survives a restart.
func TestSettleEmptiesAPackedJournal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, done := openState(t, dir, nil)
	for i := range 50 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	jdir := s.deps.JournalDir
	if len(segments(t, jdir)) == 0 {
		t.Fatal("no journal segment after 50 writes")
	}
	if err := s.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if left := segments(t, jdir); len(left) != 0 {
		t.Fatalf("journal segments left after settling a packed pinset: %v", left)
	}
	if err := s.Add(ctx, testPin(t, 50)); err != nil {
		t.Fatalf("a write after settling: %v", err)
	}
	if len(segments(t, jdir)) != 1 {
		t.Fatalf("journal segments after the next write: %v", segments(t, jdir))
	}
	done() // the write is durable in the journal; whether packed or not, it must be there

	s, done = openState(t, dir, nil)
	defer done()
	for i := range 51 {
		if _, err := s.Get(ctx, testkit.Cid(i)); err != nil {
			t.Fatalf("pin %d after settling and a restart: %v", i, err)
		}
	}
}

// Opening a pinset must not hold back Badger's compactions: go-ds-crdt
// commits an empty batch when it opens, and Badger v2 never ends the read
// an empty write batch's flush began, so every version written after it
// (a deleted key, its tombstone, an overwritten value) stayed in the
// tables, and the value log kept what they point to, for as long as the
// peer ran. Through the pinset's own store (Patient), an empty batch is
// no batch; after it, a deleted key is gone once the tables are flushed.
func TestAnOpenPinsetLetsCompactionsDropDeletedKeys(t *testing.T) {
	ctx := context.Background()
	store, dir := emptyBadger(t)
	defer store.Close()
	s := openAt(t, store, dir, "/pinring/test/state", nil, nil, nil)
	defer s.Close()
	b, err := Patient(store).Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil { // as go-ds-crdt does
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		k := ds.NewKey(fmt.Sprintf("/dead/%03d", i))
		if err := store.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := store.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	db, err := badgerOf(store)
	if err != nil {
		t.Fatal(err)
	}
	// A read at the newest timestamp (any request does it in a running
	// peer), then a flush and a compaction of the tables it wrote.
	if err := db.View(func(*badgerdb.Txn) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := SettleStore(ctx, store); err != nil {
		t.Fatal(err)
	}
	left := versionsUnder(t, store, "/dead/")
	if left != 0 {
		t.Fatalf("%d versions of %d deleted keys are still in the tables after a compaction", left, n)
	}
}
