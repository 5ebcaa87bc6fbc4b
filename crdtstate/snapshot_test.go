package crdtstate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	badgerdb "github.com/dgraph-io/badger/v2"
	ds "github.com/ipfs/go-datastore"
	badger "github.com/ipfs/go-ds-badger2"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

const testNS = "/pinring/test/state"

// snapshotOf fills a state with n pins (and removes every tenth) and
// returns its snapshot and digest.
func snapshotOf(t testing.TB, n int) ([]byte, api.StateDigest, SnapshotStats) {
	t.Helper()
	ctx := context.Background()
	s, done := openState(t, t.TempDir(), nil)
	defer done()
	for i := range n {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 10 {
		if err := s.Rm(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st, err := s.WriteSnapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), d, st
}

func emptyBadger(t testing.TB) (*badger.Datastore, string) {
	dir := t.TempDir()
	store, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	return store, dir
}

// versionsUnder counts every version Badger's tables hold under prefix,
// tombstones included.
func versionsUnder(t testing.TB, store *badger.Datastore, prefix string) int {
	t.Helper()
	n := 0
	err := store.DB.View(func(txn *badgerdb.Txn) error {
		it := txn.NewIterator(badgerdb.IteratorOptions{AllVersions: true, Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// keysUnder counts the keys under prefix.
func keysUnder(t testing.TB, store *badger.Datastore, prefix string) int {
	n := 0
	err := store.DB.View(func(txn *badgerdb.Txn) error {
		return eachItem(txn, prefix, false, func(*badgerdb.Item) error {
			n++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSnapshotLoadsIntoNewPeer(t *testing.T) {
	ctx := context.Background()
	snap, want, sent := snapshotOf(t, 2500)
	if want.Pins != 2250 || sent.Blocks == 0 || len(sent.Heads) == 0 || sent.Height == 0 {
		t.Fatalf("snapshot of %d pins: %+v", want.Pins, sent)
	}
	store, dir := emptyBadger(t)
	got, err := LoadSnapshot(ctx, store, testNS, "", bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if got.Pairs != sent.Pairs || got.Bytes != sent.Bytes || got.Blocks != sent.Blocks {
		t.Fatalf("loaded %+v, sent %+v", got, sent)
	}
	if keysUnder(t, store, testNS+"/journal") != 0 {
		t.Fatal("the sender's journal was copied")
	}
	store.Close()

	// The loaded replica opens, reads and writes like any other.
	s, done := openState(t, dir, nil)
	defer done()
	d, err := s.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d != want {
		t.Fatalf("digest after loading %+v, want %+v", d, want)
	}
	if _, err := s.Get(ctx, testkit.Cid(0)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a removed pin: %v", err)
	}
	if p, err := s.Get(ctx, testkit.Cid(7)); err != nil || p.Name != "p7" {
		t.Fatalf("pin 7: %+v, %v", p, err)
	}
	if s.Height(ctx) != sent.Height {
		t.Fatalf("height %d, snapshot's %d", s.Height(ctx), sent.Height)
	}
	// A removal needs the delta that added the pin: it is in the
	// snapshot's blocks, so this works offline.
	if err := s.Rm(ctx, testkit.Cid(7)); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, testPin(t, 1_000_000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Height(ctx) <= sent.Height {
		t.Fatalf("new writes did not build on the snapshot's heads: height %d", s.Height(ctx))
	}
	if d, _ := s.Digest(ctx); d.Pins != want.Pins {
		t.Fatalf("%d pins after one removal and one add, want %d", d.Pins, want.Pins)
	}
}

func TestSnapshotRefusals(t *testing.T) {
	ctx := context.Background()
	snap, _, _ := snapshotOf(t, 300)
	// Blocks come before the set's entries (keys in order: b/, blocks/,
	// …, s/): the first copy of a pin's name is inside a delta block.
	blockAt := bytes.Index(snap, []byte("p299"))
	if blockAt < 0 {
		t.Fatal("no pin name in the snapshot")
	}
	corrupt := bytes.Clone(snap)
	corrupt[blockAt] = 'q'
	foreign := bytes.Clone(snap)
	// The first key starts right after the header frame; rename its
	// namespace.
	at := bytes.Index(foreign, []byte(testNS))
	copy(foreign[at:], "/pinring/evil/state")

	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty stream", nil, "snapshot header"},
		{"truncated", snap[:len(snap)/2], "unexpected EOF"},
		{"no totals", snap[:len(snap)-2], "totals"},
		{"corrupted block", corrupt, "does not match its hash"},
		{"key outside the pinset", foreign, "not part of the pinset"},
		{"sender's refusal", mustHeader(t, SnapshotHeader{Error: "busy"}), "no snapshot to give: busy"},
		{"other format", mustHeader(t, SnapshotHeader{Format: DiskFormat + 1}), "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _ := emptyBadger(t)
			defer store.Close()
			_, err := LoadSnapshot(ctx, store, testNS, "", bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if n := keysUnder(t, store, testNS+"/"); n != 0 {
				t.Fatalf("%d keys left behind", n)
			}
			if empty, err := IsEmpty(store, testNS, ""); err != nil || !empty {
				t.Fatalf("empty %v, %v", empty, err)
			}
		})
	}

	t.Run("not empty", func(t *testing.T) {
		store, _ := emptyBadger(t)
		defer store.Close()
		if err := store.Put(ctx, ds.NewKey(testNS+"/s/k/pins/x/v"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSnapshot(ctx, store, testNS, "", bytes.NewReader(snap)); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("loading over data: %v", err)
		}
	})
}

func mustHeader(t *testing.T, h SnapshotHeader) []byte {
	var b bytes.Buffer
	if err := writeHeader(&b, h); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A state in the middle of a DAG walk (a block processed that no head
// reaches, or a head over an unprocessed block) gives no snapshot.
func TestSnapshotRefusesAnInconsistentState(t *testing.T) {
	defer func(n int) { snapshotTries = n }(snapshotTries)
	snapshotTries = 2
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		break_ func(store *badger.Datastore, head string) error
		want   string
	}{
		{"processed, no head reaches it", func(store *badger.Datastore, head string) error {
			return store.Put(ctx, ds.NewKey(testNS+"/b/CIQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), nil)
		}, "no head reaches"},
		{"head over an unprocessed block", func(store *badger.Datastore, head string) error {
			return store.Delete(ctx, ds.NewKey(testNS+"/b/"+head))
		}, "not processed"},
		{"dirty", func(store *badger.Datastore, head string) error {
			return store.Put(ctx, ds.NewKey(testNS+"/d"), nil)
		}, "dirty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, done := openState(t, dir, nil)
			defer done()
			for i := range 20 {
				if err := s.Add(ctx, testPin(t, i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			store := s.deps.Store.(*patient).Datastore
			var head string
			store.DB.View(func(txn *badgerdb.Txn) error {
				opts := badgerdb.DefaultIteratorOptions
				opts.Prefix = []byte(testNS + "/h/")
				it := txn.NewIterator(opts)
				defer it.Close()
				it.Seek(opts.Prefix)
				head = strings.TrimPrefix(string(it.Item().Key()), testNS+"/h/")
				return nil
			})
			l := newLayout(testNS, "")
			txn := store.DB.NewTransaction(false)
			_, err := l.consistent(txn)
			txn.Discard()
			if err != nil {
				t.Fatalf("before breaking it: %v", err)
			}
			if err := tc.break_(store, head); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, err = s.WriteSnapshot(ctx, &buf)
			if !errors.Is(err, ErrSnapshotInconsist) {
				t.Fatalf("WriteSnapshot: %v", err)
			}
			// The receiver is told why.
			other, _ := emptyBadger(t)
			defer other.Close()
			if _, err := LoadSnapshot(ctx, other, testNS, "", &buf); err == nil || !strings.Contains(err.Error(), "kept changing") {
				t.Fatalf("receiver: %v", err)
			}
			txn = store.DB.NewTransaction(false)
			_, err = l.consistent(txn)
			txn.Discard()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("consistency check: %v, want %q", err, tc.want)
			}
		})
	}
}

// A load cut short by a crash (no deferred cleanup ran) leaves its marker:
// the next start drops the partial snapshot instead of opening it.
func TestPartialSnapshotIsDroppedAtStart(t *testing.T) {
	ctx := context.Background()
	snap, _, _ := snapshotOf(t, 300)
	store, dir := emptyBadger(t)
	// What a load leaves after a crash: its marker and the first part of
	// the stream (here: all of it, minus the marker's removal).
	if _, err := LoadSnapshot(ctx, store, testNS, "", bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, loadingKey(testNS), nil); err != nil {
		t.Fatal(err)
	}
	if empty, _ := IsEmpty(store, testNS, ""); empty {
		t.Fatal("a partly loaded store counts as empty")
	}
	store.Close()

	s, done := openState(t, dir, nil)
	defer done()
	if d, err := s.Digest(ctx); err != nil || d.Pins != 0 {
		t.Fatalf("a partial snapshot was opened: %+v %v", d, err)
	}
	if s.Height(ctx) != 0 {
		t.Fatalf("height %d after dropping the partial snapshot", s.Height(ctx))
	}
	if dropped, err := DropPartialSnapshot(ctx, s.deps.Store, testNS, ""); dropped || err != nil {
		t.Fatalf("dropped again: %v %v", dropped, err)
	}
}
