package crdtstate

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	badgerdb "github.com/dgraph-io/badger/v2"

	"github.com/pinring/pinring/internal/testkit"
)

// FuzzDecodePin: any bytes decode to a pin or an error, never a panic; a
// pin that decodes encodes to bytes that decode to the same pin.
func FuzzDecodePin(f *testing.F) {
	p := testPin(f, 1)
	p.Version = 3
	p.Metadata = map[string]string{"k": "v"}
	f.Add(EncodePin(p))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodePin(b)
		if err != nil {
			return
		}
		again, err := DecodePin(EncodePin(got))
		if err != nil {
			t.Fatalf("a decoded pin does not decode after encoding: %s", err)
		}
		if !bytes.Equal(EncodePin(again), EncodePin(got)) {
			t.Fatalf("encoding is not stable:\n%+v\n%+v", got, again)
		}
	})
}

// FuzzJournalSegment: whatever follows whole records in a segment (a torn
// write, garbage, a crafted record), opening the journal keeps every whole
// record in order, never panics, cuts the segment to what it read, and
// reads the same records again at the next open.
func FuzzJournalSegment(f *testing.F) {
	f.Add(uint8(3), []byte{})
	f.Add(uint8(1), []byte{0, 0, 0, 9, 1, 2, 3})
	f.Add(uint8(0), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add(uint8(2), []byte{0, 0, 0, 0, 1, 1, 1, 1})
	// A record whose checksum matches a payload that is not a journal entry.
	bad := []byte{0, 0, 0, 0, 0, 0, 0, 7, 9, 9}
	rec := binary.BigEndian.AppendUint32(nil, uint32(len(bad)))
	rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(bad, journalCRC))
	f.Add(uint8(1), append(rec, bad...))
	f.Fuzz(func(t *testing.T, n uint8, tail []byte) {
		n %= 8
		var records []byte
		for i := range int(n) {
			o := &op{pin: testPin(t, i), cid: testkit.Cid(i), seq: uint64(i + 1)}
			records = appendJournalRecord(records, o)
		}
		dir := t.TempDir()
		seg := filepath.Join(dir, "0000000000000001"+journalSuffix)
		if err := os.WriteFile(seg, append(records, tail...), 0o600); err != nil {
			t.Fatal(err)
		}
		_, ops, err := openJournalFile(dir, 0)
		if err != nil {
			t.Fatalf("opening: %s", err)
		}
		if len(ops) < int(n) {
			t.Fatalf("%d whole records written, %d read", n, len(ops))
		}
		for i := range int(n) {
			if ops[i].seq != uint64(i+1) || !ops[i].cid.Equals(testkit.Cid(i).Cid) {
				t.Fatalf("record %d read back as seq %d, %s", i, ops[i].seq, ops[i].cid)
			}
		}
		_, again, err := openJournalFile(dir, 0)
		if err != nil {
			t.Fatalf("opening again: %s", err)
		}
		if len(again) != len(ops) {
			t.Fatalf("first open read %d records, the second %d", len(ops), len(again))
		}
	})
}

// FuzzLoadSnapshot: a damaged or crafted snapshot stream is refused with
// an error and leaves nothing behind, never panics; one that loads is
// made only of pinset keys.
func FuzzLoadSnapshot(f *testing.F) {
	snap, _, _ := snapshotOf(f, 3)
	f.Add(snap)
	f.Add(snap[:len(snap)/2])
	f.Add(snap[:len(snap)-1])
	store, _ := emptyBadger(f)
	f.Cleanup(func() { store.Close() })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := LoadSnapshot(ctx, store, testNS, "", bytes.NewReader(b))
		if err != nil {
			if n := keysUnder(t, store, ""); n != 0 {
				t.Fatalf("a refused snapshot (%s) left %d keys behind", err, n)
			}
			return
		}
		l := newLayout(testNS, "")
		err = store.DB.View(func(txn *badgerdb.Txn) error {
			return eachItem(txn, "", false, func(it *badgerdb.Item) error {
				if k := string(it.Key()); !l.copied(k) && k != formatKey(testNS).String() {
					return fmt.Errorf("loaded key %q is not part of the pinset", k)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.DB.DropAll(); err != nil {
			t.Fatal(err)
		}
	})
}
