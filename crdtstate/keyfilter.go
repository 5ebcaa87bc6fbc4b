package crdtstate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	badgerdb "github.com/dgraph-io/badger/v2"
	"github.com/ipfs/bbloom"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// keyFilter is the datastore go-ds-crdt is given. It passes everything on
// to the peer's datastore, and keeps a Bloom filter of the keys written
// under prefix (the CRDT set's, <namespace>/s/) but not under skip, so
// that a Get or Has of a key there that was never written is answered
// without the datastore. Keys under skip (the set's element entries, one
// for every write of a key, which go-ds-crdt lists but never looks up)
// stay out of the filter and go to the datastore like any other key.
//
// go-ds-crdt asks for absent keys all the time: merging an element reads
// its tombstone and its key's priority, which a new pin does not have, and
// the writer reads the record of every pin it is given, to set its version.
// Badger answers each by searching its memtables and tables. On the
// 3-peer ingestion bench that was 30 µs of CPU a pin across the peers
// (docs/performance.md).
//
// The filter holds a superset of the keys present: a key is added before
// the write that stores it, and stays when it is deleted. It answers only
// once it also holds every key the datastore had when it was created, read
// from a snapshot in the background; until then every lookup goes to the
// datastore. A write holds mu's read lock from adding its keys until the
// datastore has them, and the snapshot is taken under the write lock, so
// each key is in the snapshot or was added to the filter being filled.
// When the keys added pass what a filter is sized for, a filter twice as
// large is filled the same way and takes its place.
type keyFilter struct {
	ds.Batching
	prefix   string
	skip     string
	snapshot func(ctx context.Context, prefix string) (keySnapshot, error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu is held for reading by a write, from adding its keys to the
	// filters until the datastore holds them, and for writing while a
	// snapshot to fill a new filter is taken.
	mu      sync.RWMutex
	cur     atomic.Pointer[bloomGen] // answers lookups; nil until filled
	next    *bloomGen                // being filled, under mu
	epoch   uint64                   // filters begun, under mu
	growing atomic.Bool              // a fill is running
	// answered counts lookups answered by the filter alone.
	answered atomic.Uint64
}

// keySnapshot lists the keys under a prefix as they were when it was
// taken.
type keySnapshot struct {
	walk  func(fn func(key []byte) error) error
	close func()
}

// bloomGen is one filter and the number of keys it was sized for.
type bloomGen struct {
	bloom *bbloom.Bloom
	limit uint64
	keys  atomic.Uint64 // keys added that set a new bit (≈ distinct keys)
}

// initialFilterKeys is what the first filter is sized for: 2M keys, about
// a million pins (a value and a priority entry each).
const initialFilterKeys = 1 << 21

// newBloomGen sizes a filter for limit keys: at least 16 bits a key (a
// power of two) and 3 hash locations, under 0.5 % false positives at
// limit keys. Each location is a cache miss in a filter of megabytes, so
// fewer locations in more bits cost less than the 7 of a tighter filter.
func newBloomGen(limit uint64) *bloomGen {
	bits := uint64(1) << bits.Len64(16*limit-1)
	// Random SipHash keys: the CIDs hashed come from other peers.
	var k [16]byte
	_, _ = rand.Read(k[:])
	b, err := bbloom.NewWithKeys(binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:]), float64(bits), 3)
	if err != nil {
		panic(fmt.Sprintf("bloom filter of %d bits: %s", bits, err)) // only for negative sizes
	}
	return &bloomGen{bloom: b, limit: limit}
}

func (g *bloomGen) add(key []byte) {
	if g.bloom.AddIfNotHasTS(key) {
		g.keys.Add(1)
	}
}

// newKeyFilter wraps store and starts filling the first filter.
func newKeyFilter(ctx context.Context, store ds.Batching, prefix, skip string) *keyFilter {
	return startKeyFilter(ctx, store, prefix, skip, initialFilterKeys, snapshotKeys(store))
}

func startKeyFilter(ctx context.Context, store ds.Batching, prefix, skip string, limit uint64, snapshot func(context.Context, string) (keySnapshot, error)) *keyFilter {
	f := &keyFilter{Batching: store, prefix: prefix, skip: skip, snapshot: snapshot}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.growing.Store(true)
	f.wg.Add(1)
	go f.fill(newBloomGen(limit))
	return f
}

// stop ends a fill in progress. It does not close the datastore.
func (f *keyFilter) stop() {
	f.cancel()
	f.wg.Wait()
}

// ready reports whether a filter answers lookups.
func (f *keyFilter) ready() bool { return f.cur.Load() != nil }

// fill fills g from a snapshot of the datastore, then makes it the filter
// that answers lookups; if more keys were added meanwhile than g is sized
// for, it goes on with a bigger one.
func (f *keyFilter) fill(g *bloomGen) {
	defer f.wg.Done()
	for g != nil {
		g = f.fillOne(g)
	}
	f.growing.Store(false)
}

func (f *keyFilter) fillOne(g *bloomGen) *bloomGen {
	f.mu.Lock()
	snap, err := f.snapshot(f.ctx, f.prefix)
	if err == nil {
		f.next = g
		f.epoch++
	}
	f.mu.Unlock()
	if err != nil {
		logger.Warnf("listing the pinset's keys for its key filter (lookups go to the datastore): %s", err)
		return nil
	}
	n := 0
	err = snap.walk(func(key []byte) error {
		if n++; n%4096 == 0 && f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		if f.skip == "" || !bytes.HasPrefix(key, bytesOf(f.skip)) {
			g.add(key)
		}
		return nil
	})
	snap.close()
	f.mu.Lock()
	f.next = nil
	if err == nil {
		f.cur.Store(g)
	}
	f.mu.Unlock()
	if err != nil {
		if f.ctx.Err() == nil {
			logger.Warnf("listing the pinset's keys for its key filter: %s", err)
		}
		return nil
	}
	logger.Debugf("pinset key filter ready: %d keys listed, sized for %d", n, g.limit)
	if keys := g.keys.Load(); keys > g.limit {
		return newBloomGen(2 * keys)
	}
	return nil
}

// note adds k to the filters if it is covered; the caller holds mu for
// reading.
func (f *keyFilter) note(k ds.Key) {
	if f.covers(k) {
		f.add(k)
	}
}

// add adds k, a covered key, to the filters; the caller holds mu for
// reading.
func (f *keyFilter) add(k ds.Key) {
	key := bytesOf(k.String())
	cur := f.cur.Load()
	if cur != nil {
		cur.add(key)
	}
	if f.next != nil {
		f.next.add(key)
	}
	if cur != nil && cur.keys.Load() > cur.limit && f.ctx.Err() == nil && f.growing.CompareAndSwap(false, true) {
		f.wg.Add(1)
		go f.fill(newBloomGen(2 * cur.keys.Load()))
	}
}

func (f *keyFilter) covers(k ds.Key) bool {
	s := k.String()
	return strings.HasPrefix(s, f.prefix) && (f.skip == "" || !strings.HasPrefix(s, f.skip))
}

// absent reports whether the filter knows k was never written.
func (f *keyFilter) absent(k ds.Key) bool {
	if !f.covers(k) {
		return false
	}
	g := f.cur.Load()
	if g == nil || g.bloom.HasTS(bytesOf(k.String())) {
		return false
	}
	f.answered.Add(1)
	return true
}

// bytesOf is s's bytes without a copy, for hashing only.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (f *keyFilter) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	if f.absent(k) {
		return nil, ds.ErrNotFound
	}
	return f.Batching.Get(ctx, k)
}

func (f *keyFilter) Has(ctx context.Context, k ds.Key) (bool, error) {
	if f.absent(k) {
		return false, nil
	}
	return f.Batching.Has(ctx, k)
}

func (f *keyFilter) GetSize(ctx context.Context, k ds.Key) (int, error) {
	if f.absent(k) {
		return -1, ds.ErrNotFound
	}
	return f.Batching.GetSize(ctx, k)
}

func (f *keyFilter) Put(ctx context.Context, k ds.Key, v []byte) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.note(k)
	return f.Batching.Put(ctx, k, v)
}

func (f *keyFilter) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := f.Batching.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &filterBatch{Batch: b, f: f}, nil
}

// filterBatch adds each key as it is put (a datastore's batch may write
// part of itself early), and again when the batch commits if a new filter
// began filling since.
type filterBatch struct {
	ds.Batch
	f     *keyFilter
	keys  []ds.Key
	epoch uint64 // f.epoch at the first key
}

func (b *filterBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	b.f.mu.RLock()
	defer b.f.mu.RUnlock()
	if b.f.covers(k) {
		if len(b.keys) == 0 {
			b.epoch = b.f.epoch
		}
		b.f.add(k)
		b.keys = append(b.keys, k)
	}
	return b.Batch.Put(ctx, k, v)
}

func (b *filterBatch) Commit(ctx context.Context) error {
	b.f.mu.RLock()
	defer b.f.mu.RUnlock()
	if len(b.keys) > 0 && b.epoch != b.f.epoch {
		for _, k := range b.keys {
			b.f.add(k) // only covered keys were kept
		}
	}
	b.keys = b.keys[:0]
	return b.Batch.Commit(ctx)
}

// snapshotKeys lists keys straight from Badger's iterator when store is
// Badger (no values read, no channel), else through a keys-only query.
// Both read a snapshot taken when the function returns.
func snapshotKeys(store ds.Datastore) func(ctx context.Context, prefix string) (keySnapshot, error) {
	if db, err := badgerOf(store); err == nil {
		return func(_ context.Context, prefix string) (keySnapshot, error) {
			txn := db.NewTransaction(false)
			return keySnapshot{
				walk: func(fn func([]byte) error) error {
					return eachItem(txn, prefix, false, func(item *badgerdb.Item) error { return fn(item.Key()) })
				},
				close: txn.Discard,
			}, nil
		}
	}
	return func(ctx context.Context, prefix string) (keySnapshot, error) {
		res, err := store.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
		if err != nil {
			return keySnapshot{}, err
		}
		return keySnapshot{
			walk: func(fn func([]byte) error) error {
				for r := range res.Next() {
					if r.Error != nil {
						return r.Error
					}
					if err := fn([]byte(r.Key)); err != nil {
						return err
					}
				}
				return nil
			},
			close: func() { res.Close() },
		}, nil
	}
}
