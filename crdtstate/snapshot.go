package crdtstate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	badgerdb "github.com/dgraph-io/badger/v2"
	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	badger "github.com/ipfs/go-ds-badger2"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/internal/frame"
)

// A state snapshot is the CRDT's own keyspace as of one Badger read
// transaction: the set (elements, tombstones, values, priorities), the
// processed-block markers, the heads and every delta block. A peer that
// starts empty loads it with blind writes and then only walks deltas newer
// than it, instead of merging the whole history key by key (ADR 5).
//
// Stream: one frame holding the JSON SnapshotHeader; then pairs
// [uvarint shared][uvarint n][n bytes of key suffix][uvarint len][value],
// where the key is the previous key's first `shared` bytes followed by the
// suffix (keys come in order, so most of each key is shared); a pair with
// an empty key ends the pairs, followed by [uvarint pairs][uvarint bytes].

// SnapshotHeader opens a snapshot stream.
type SnapshotHeader struct {
	// Error, when set, is why the sender has no snapshot to give; nothing
	// follows.
	Error string `json:"error,omitempty"`
	// Format is the sender's DiskFormat; a receiver loads only its own.
	Format int `json:"format,omitempty"`
	// Heads are the CRDT heads (CIDs) the snapshot holds, and Height the
	// highest delta height among them.
	Heads  []string `json:"heads,omitempty"`
	Height uint64   `json:"height,omitempty"`
	// Blocks is how many delta blocks the snapshot holds.
	Blocks int `json:"blocks,omitempty"`
}

// SnapshotStats describes a snapshot sent or loaded.
type SnapshotStats struct {
	SnapshotHeader
	Pairs int
	Bytes int64
}

// Errors.
var (
	ErrNotEmpty          = errors.New("the pinset is not empty: a snapshot is only loaded by a peer that holds nothing yet")
	ErrSnapshotInconsist = errors.New("the state kept changing while a snapshot was taken")
)

// snapshotTries is how many read transactions a snapshot tries for a
// consistent one, snapshotRetry apart.
var snapshotTries = 50

const (
	snapshotRetry   = 100 * time.Millisecond
	maxSnapshotKey  = 4 << 10
	maxSnapshotVal  = 8 << 20
	maxHeaderLength = 1 << 20
	loadChunk       = 16 << 20
)

// snapshotLayout names the key ranges of one pinset in the datastore.
type snapshotLayout struct {
	ns     string // <ns>/: the CRDT, the journal, the format key
	blocks string // where the delta blocks are: <blocks ns>/blocks/
}

func newLayout(ns, blocksNS string) snapshotLayout {
	if blocksNS == "" {
		blocksNS = ns + "/blocks"
	}
	return snapshotLayout{ns: ns + "/", blocks: blocksNS + "/blocks/"}
}

// prefixes are the ranges a snapshot copies (the blocks range may lie
// inside the namespace).
func (l snapshotLayout) prefixes() []string {
	if strings.HasPrefix(l.blocks, l.ns) {
		return []string{l.ns}
	}
	return []string{l.ns, l.blocks}
}

// copied reports whether a key belongs in a snapshot: the journal (this
// peer's unpacked writes), the dirty bit and the format key stay behind.
func (l snapshotLayout) copied(k string) bool {
	if strings.HasPrefix(k, l.blocks) {
		return true
	}
	rest, ok := strings.CutPrefix(k, l.ns)
	if !ok {
		return false
	}
	switch {
	case rest == "journal-packed", rest == "d", rest == "format", rest == "snapshot-loading", strings.HasPrefix(rest, "journal/"):
		return false
	}
	return true
}

func badgerOf(store ds.Datastore) (*badgerdb.DB, error) {
	switch b := store.(type) {
	case *badger.Datastore:
		return b.DB, nil
	case *patient:
		return b.DB, nil
	}
	return nil, errors.New("state snapshots need the Badger datastore")
}

// WriteSnapshot writes this replica's state to w as one consistent
// snapshot. If the state never holds still long enough (every head's
// history processed, and nothing processed that no head reaches), it
// writes a header with the reason and returns ErrSnapshotInconsist.
func (s *State) WriteSnapshot(ctx context.Context, w io.Writer) (SnapshotStats, error) {
	var st SnapshotStats
	db, err := badgerOf(s.deps.Store)
	if err != nil {
		return st, writeHeader(w, SnapshotHeader{Error: err.Error()})
	}
	l := newLayout(s.deps.Namespace, s.deps.BlocksNamespace)
	var txn *badgerdb.Txn
	for try := 0; ; try++ {
		txn = db.NewTransaction(false)
		st.SnapshotHeader, err = l.consistent(txn)
		if err == nil {
			break
		}
		txn.Discard()
		if try == snapshotTries || ctx.Err() != nil {
			logger.Warnf("no snapshot: %s", err)
			reason := fmt.Sprintf("%s (last: %s)", ErrSnapshotInconsist, err)
			return st, errors.Join(fmt.Errorf("%w: %w", ErrSnapshotInconsist, err), writeHeader(w, SnapshotHeader{Error: reason}))
		}
		select {
		case <-ctx.Done():
		case <-time.After(snapshotRetry):
		}
	}
	defer txn.Discard()
	st.Format = DiskFormat
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := writeHeader(bw, st.SnapshotHeader); err != nil {
		return st, err
	}
	var prev []byte
	var buf [2 * binary.MaxVarintLen64]byte
	for _, prefix := range l.prefixes() {
		err := eachItem(txn, prefix, true, func(item *badgerdb.Item) error {
			k := item.Key()
			if !l.copied(string(k)) {
				return nil
			}
			if st.Pairs%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			shared := commonPrefix(prev, k)
			n := binary.PutUvarint(buf[:], uint64(shared))
			n += binary.PutUvarint(buf[n:], uint64(len(k)-shared))
			bw.Write(buf[:n])
			bw.Write(k[shared:])
			err := item.Value(func(v []byte) error {
				if err := frame.Write(bw, v); err != nil {
					return err
				}
				st.Bytes += int64(n + len(k) - shared + len(v))
				return nil
			})
			prev = append(prev[:0], k...)
			st.Pairs++
			return err
		})
		if err != nil {
			return st, err
		}
	}
	// The end: an empty key, then the totals.
	bw.Write([]byte{0, 0})
	frame.WriteUvarint(bw, uint64(st.Pairs))
	frame.WriteUvarint(bw, uint64(st.Bytes))
	return st, bw.Flush()
}

func writeHeader(w io.Writer, h SnapshotHeader) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := frame.Write(w, b); err != nil {
		return err
	}
	if f, ok := w.(interface{ Flush() error }); ok && h.Error != "" {
		return f.Flush()
	}
	return nil
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// consistent checks, in txn, that the processed blocks are exactly the
// blocks the heads reach: go-ds-crdt marks a block processed as soon as it
// is merged and records a head only when its branch is done, so a
// snapshot taken in the middle of a DAG walk would hold processed blocks no
// head reaches (the receiver would skip them when they are announced) or
// heads above unprocessed blocks.
func (l snapshotLayout) consistent(txn *badgerdb.Txn) (SnapshotHeader, error) {
	var h SnapshotHeader
	if _, err := txn.Get([]byte(l.ns + "d")); err == nil {
		return h, errors.New("the DAG is marked dirty (a sync did not finish)")
	}
	keys := func(prefix string, fn func(suffix string, item *badgerdb.Item) error) error {
		return eachItem(txn, prefix, false, func(item *badgerdb.Item) error {
			return fn(string(item.Key()[len(prefix):]), item)
		})
	}
	processed := map[string]bool{}
	if err := keys(l.ns+"b/", func(k string, _ *badgerdb.Item) error {
		processed[k] = false // not reached yet
		return nil
	}); err != nil {
		return h, err
	}
	var todo []string
	err := keys(l.ns+"h/", func(k string, item *badgerdb.Item) error {
		return item.Value(func(v []byte) error {
			height, n := binary.Uvarint(v)
			if n <= 0 {
				return fmt.Errorf("head %s: bad height", k)
			}
			m, err := dshelp.DsKeyToMultihash(ds.RawKey("/" + k))
			if err != nil {
				return fmt.Errorf("head %s: %w", k, err)
			}
			h.Heads = append(h.Heads, cid.NewCidV1(cid.DagProtobuf, m).String())
			h.Height = max(h.Height, height)
			todo = append(todo, k)
			return nil
		})
	})
	if err != nil {
		return h, err
	}
	for len(todo) > 0 {
		k := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		seen, ok := processed[k]
		if !ok {
			return h, fmt.Errorf("block %s is reached from a head but not processed", k)
		}
		if seen {
			continue
		}
		processed[k] = true
		item, err := txn.Get([]byte(l.blocks + k))
		if err != nil {
			return h, fmt.Errorf("block %s: %w", k, err)
		}
		err = item.Value(func(v []byte) error {
			nd, err := merkledag.DecodeProtobuf(v)
			if err != nil {
				return err
			}
			for _, link := range nd.Links() {
				todo = append(todo, dshelp.MultihashToDsKey(link.Cid.Hash()).String()[1:])
			}
			return nil
		})
		if err != nil {
			return h, fmt.Errorf("block %s: %w", k, err)
		}
		h.Blocks++
	}
	for k, seen := range processed {
		if !seen {
			return h, fmt.Errorf("block %s is processed but no head reaches it", k)
		}
	}
	return h, nil
}

// IsEmpty reports whether the datastore holds nothing of the pinset in
// ns (a new peer): no CRDT data, no journal, no blocks.
func IsEmpty(store ds.Datastore, ns, blocksNS string) (bool, error) {
	db, err := badgerOf(store)
	if err != nil {
		return false, err
	}
	l := newLayout(ns, blocksNS)
	empty := true
	err = db.View(func(txn *badgerdb.Txn) error {
		for _, prefix := range l.prefixes() {
			err := eachItem(txn, prefix, false, func(item *badgerdb.Item) error {
				if k := string(item.Key()); k != l.ns+"format" && k != l.ns+"crdt_version" {
					empty = false
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
		}
		return nil
	})
	return empty, err
}

// errStop ends an eachItem walk early, as a success.
var errStop = errors.New("stop")

// eachItem calls fn for every key under prefix in txn, in key order,
// until fn returns an error. With prefetch, values are read ahead.
func eachItem(txn *badgerdb.Txn, prefix string, prefetch bool, fn func(*badgerdb.Item) error) error {
	opts := badgerdb.DefaultIteratorOptions
	opts.PrefetchValues = prefetch
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(opts.Prefix); it.ValidForPrefix(opts.Prefix); it.Next() {
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}

func loadingKey(ns string) ds.Key { return ds.NewKey(ns).ChildString("snapshot-loading") }

// DropPartialSnapshot removes what a snapshot load that never finished
// (the process died) left behind, and reports whether there was any. New
// calls it; so should anyone checking IsEmpty before loading.
func DropPartialSnapshot(ctx context.Context, store ds.Datastore, ns, blocksNS string) (bool, error) {
	switch _, err := store.Get(ctx, loadingKey(ns)); {
	case errors.Is(err, ds.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	db, err := badgerOf(store)
	if err != nil {
		return false, err
	}
	logger.Warnf("removing a state snapshot whose loading did not finish")
	return true, db.DropPrefix(prefixBytes(newLayout(ns, blocksNS).prefixes())...)
}

// LoadSnapshot reads a snapshot from r into an empty datastore, before the
// pinset is opened (New). Every block is checked against its hash and
// every key must belong to the pinset; the data is synced to disk before
// it returns. On any error nothing of the snapshot is left behind.
func LoadSnapshot(ctx context.Context, store ds.Datastore, ns, blocksNS string, r io.Reader) (SnapshotStats, error) {
	var st SnapshotStats
	db, err := badgerOf(store)
	if err != nil {
		return st, err
	}
	switch empty, err := IsEmpty(store, ns, blocksNS); {
	case err != nil:
		return st, err
	case !empty:
		return st, ErrNotEmpty
	}
	l := newLayout(ns, blocksNS)
	br := bufio.NewReaderSize(r, 256<<10)
	hb, err := frame.Read(br, maxHeaderLength)
	if err != nil {
		return st, fmt.Errorf("snapshot header: %w", err)
	}
	if err := json.Unmarshal(hb, &st.SnapshotHeader); err != nil {
		return st, fmt.Errorf("snapshot header: %w", err)
	}
	if st.Error != "" {
		return st, fmt.Errorf("the peer has no snapshot to give: %s", st.Error)
	}
	if st.Format != DiskFormat {
		return st, fmt.Errorf("the snapshot is of format %d, this peer keeps format %d", st.Format, DiskFormat)
	}
	// A crash in the middle would leave part of a snapshot, which would
	// open as a pinset missing what its processed markers promise: the
	// marker, durable before anything else and removed with the last
	// write, makes the next start drop it (DropPartialSnapshot).
	if err := store.Put(ctx, loadingKey(ns), nil); err != nil {
		return st, err
	}
	if err := store.Sync(ctx, loadingKey(ns)); err != nil {
		return st, err
	}
	// Badger does not count values kept in its value log against a
	// transaction's size, so one write batch would hold every delta block
	// (hundreds of MB at a million pins) in memory: flush every
	// loadChunk bytes instead.
	wb := db.NewWriteBatch()
	pending := 0
	loaded := false
	defer func() {
		if !loaded {
			wb.Cancel()
			if err := db.DropPrefix(prefixBytes(l.prefixes())...); err != nil {
				logger.Errorf("removing a partly loaded snapshot: %s", err)
			}
		}
	}()
	var key []byte
	for {
		if st.Pairs%4096 == 0 && ctx.Err() != nil {
			return st, ctx.Err()
		}
		shared, err1 := binary.ReadUvarint(br)
		suffix, err2 := frame.Read(br, maxSnapshotKey)
		if err := errors.Join(err1, err2); err != nil {
			return st, fmt.Errorf("snapshot pair %d: %w", st.Pairs, unexpected(err))
		}
		if shared > uint64(len(key)) {
			return st, fmt.Errorf("snapshot pair %d: shares %d bytes with a key of %d", st.Pairs, shared, len(key))
		}
		if shared == 0 && len(suffix) == 0 {
			break
		}
		key = append(key[:shared], suffix...)
		val, err := frame.Read(br, maxSnapshotVal)
		if err != nil {
			return st, fmt.Errorf("snapshot pair %d: %w", st.Pairs, unexpected(err))
		}
		k := string(key)
		if !l.copied(k) {
			return st, fmt.Errorf("snapshot pair %d: key %q is not part of the pinset", st.Pairs, k)
		}
		if b, ok := strings.CutPrefix(k, l.blocks); ok {
			if err := checkBlock(b, val); err != nil {
				return st, err
			}
		}
		if err := wb.Set(bytes.Clone(key), val); err != nil {
			return st, err
		}
		if pending += len(key) + len(val); pending >= loadChunk {
			if err := wb.Flush(); err != nil {
				return st, err
			}
			wb, pending = db.NewWriteBatch(), 0
		}
		st.Pairs++
		st.Bytes += int64(uvarintLen(shared) + uvarintLen(uint64(len(suffix))) + len(suffix) + len(val))
	}
	pairs, err1 := binary.ReadUvarint(br)
	size, err2 := binary.ReadUvarint(br)
	if err := errors.Join(err1, err2); err != nil {
		return st, fmt.Errorf("snapshot totals: %w", unexpected(err))
	}
	if pairs != uint64(st.Pairs) || size != uint64(st.Bytes) {
		return st, fmt.Errorf("snapshot ends after %d pairs (%d bytes) but says %d (%d bytes)", st.Pairs, st.Bytes, pairs, size)
	}
	if err := wb.Set([]byte(formatKey(ns).String()), fmt.Appendf(nil, "%d", DiskFormat)); err != nil {
		return st, err
	}
	if err := wb.Delete([]byte(loadingKey(ns).String())); err != nil {
		return st, err
	}
	if err := wb.Flush(); err != nil {
		return st, err
	}
	if err := db.Sync(); err != nil {
		return st, err
	}
	loaded = true
	return st, nil
}

func checkBlock(key string, val []byte) error {
	m, err := dshelp.DsKeyToMultihash(ds.RawKey("/" + key))
	if err != nil {
		return fmt.Errorf("snapshot block %s: %w", key, err)
	}
	dec, err := mh.Decode(m)
	if err != nil {
		return fmt.Errorf("snapshot block %s: %w", key, err)
	}
	sum, err := mh.Sum(val, dec.Code, dec.Length)
	if err != nil {
		return fmt.Errorf("snapshot block %s: %w", key, err)
	}
	if !bytes.Equal(sum, m) {
		return fmt.Errorf("snapshot block %s does not match its hash", key)
	}
	return nil
}

func prefixBytes(ps []string) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = []byte(p)
	}
	return out
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
