package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"crypto/sha256"
	"slices"

	badgerdb "github.com/dgraph-io/badger/v2"
	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/pinring/pinring/api"
)

// Epochs (docs/adr/0009-compaction.md). The pinset of epoch e > 0 lives in
// its own go-ds-crdt namespace beside epoch 0's, and starts as a writer's
// verbatim copy of the live pins of epoch e-1: ordinary deltas, so every
// peer syncs it (DAG or snapshot) like any pinset, and what it carries is
// the live pinset plus what was written since — never the history before
// the copy. Epoch e-1's namespace is then dropped whole.
//
// The copy is made of real deltas, not of set entries written directly,
// because go-ds-crdt, when a key's element is tombstoned, reads the delta
// block of every other element of that key to find the value that
// remains: an element with no block behind it would fail that merge.

// EpochNamespace is where epoch e of the pinset whose epoch 0 is at ns
// lives: a sibling of ns (ns itself for epoch 0), so that dropping one
// epoch's prefix never touches another's.
func EpochNamespace(ns string, e uint64) string {
	if e == 0 {
		return ns
	}
	return fmt.Sprintf("%s%s%d", ns, epochSuffix, e)
}

// epochSuffix joins epoch 0's namespace and an epoch number into the
// namespace of that epoch.
const epochSuffix = "-e"

// CopyStats describes a copy of the live pinset into a new epoch.
type CopyStats struct {
	// Pins is how many pins were copied; Digest is the source's digest
	// of them, which the destination then gives too (nothing else
	// written meanwhile).
	Pins   int
	Digest api.StateDigest
	// Admissions is how many admission records were copied.
	Admissions int
}

// copyWorkers is how many copies are in flight at once: each waits for
// its group's fsync, so enough must be in flight to fill the groups.
const copyWorkers = 256

// CopyLive writes every pin of from into to, verbatim (Version and
// Timestamp as they are), through to's journal, then every admission
// record: when it returns, every
// copied pin is durable in to and to's digest of them is from's. It is
// a writer's half of starting a new epoch; to should be empty (a pin
// already in to is overwritten by from's record). The pins come from one
// listing of what from has packed into its CRDT (so that a later removal
// in from tombstones the very record copied, which CarryOver relies on):
// writes still in from's journal, and writes to from during the copy,
// are what a new epoch's carry-over is for (CarryOver).
func CopyLive(ctx context.Context, from, to *State) (CopyStats, error) {
	var st CopyStats
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pins := make(chan api.Pin, copyWorkers)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel() })
	}
	for range copyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range pins {
				if err := to.put(ctx, &p); err != nil {
					fail(fmt.Errorf("copying %s into the new epoch: %w", p.Cid, err))
					return
				}
			}
		}()
	}
	h := newDigester()
	err := from.eachPacked(ctx, func(k string, v []byte) error {
		p, err := DecodePin(v)
		if err != nil {
			return fmt.Errorf("pinset entry %s: %w", k, err)
		}
		h.add(k, v)
		select {
		case pins <- *p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(pins)
	wg.Wait()
	if err != nil {
		fail(err)
	}
	if first != nil {
		return st, first
	}
	st.Digest = h.sum()
	st.Pins = int(st.Digest.Pins)
	// The admission records (a handful, written directly) come along.
	as, err := from.Admissions(ctx)
	if err != nil {
		return st, err
	}
	for _, a := range as {
		if err := to.PutAdmission(ctx, a); err != nil {
			return st, fmt.Errorf("copying the admission of %s into the new epoch: %w", a.Peer, err)
		}
	}
	st.Admissions = len(as)
	return st, nil
}

// put writes p as it is (its Version and Timestamp kept): the copy of a
// record made elsewhere, acknowledged once durable like Add.
func (s *State) put(ctx context.Context, p *api.Pin) error {
	if err := p.Validate(); err != nil {
		return err
	}
	cp := *p
	return s.submit(ctx, &op{pin: &cp, cid: p.Cid, verbatim: true})
}

// Newer reports whether record a supersedes record b of the same CID
// written in another epoch: the later timestamp, then the higher version.
func Newer(a, b *api.Pin) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.After(b.Timestamp)
	}
	return a.Version > b.Version
}

// CarryOver brings the records of the given CIDs from an older epoch's
// pinset into the current one: a late write to the old epoch (made by a
// writer that had not moved yet, or merged after the copy: one cov calls
// Late) reaches the current epoch unless the current one holds a newer
// record (Newer), or removed that record (or a newer one) since the copy; a
// CID gone from old is removed from cur when cur's record is one the old
// epoch held and removed (the copy of it, or a carry-over of it) — never
// when cur's record was written in cur, or is one old never had. It
// returns how many CIDs it changed; carrying again changes nothing. The
// old epoch is read as packed into its CRDT: a write still in its journal
// is carried by a later call, once packed (a writer that moved on writes
// no more to the old epoch, and its packer drains the journal).
func CarryOver(ctx context.Context, old, cur *State, cids []api.Cid, cov Coverage) (changed int, err error) {
	// The removals apply when packed: wait for them, so that what was
	// carried is in cur on return, as the writes are.
	var lastRm uint64
	defer func() {
		if lastRm > 0 && err == nil {
			err = cur.waitPacked(ctx, lastRm)
		}
	}()
	for _, c := range cids {
		was, err := old.get(ctx, pinKey(c))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return changed, err
		}
		if was != nil && !cov.Late(was) {
			// The copy saw it: cur holds it, or what replaced or
			// removed it.
			continue
		}
		now, err := cur.Get(ctx, c)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return changed, err
		}
		if was != nil && now == nil {
			// Gone from cur: a late write (carry it), or a record the
			// copy held that cur removed since (keep it removed).
			gone, err := cur.removed(ctx, c)
			if err != nil {
				return changed, err
			}
			if slices.ContainsFunc(gone, func(r *api.Pin) bool { return sameRecord(r, was) || Newer(r, was) }) {
				continue
			}
		}
		switch {
		case was != nil && (now == nil || Newer(was, now)):
			if err := cur.put(ctx, was); err != nil {
				return changed, err
			}
			changed++
		case was == nil && now != nil:
			removed, err := old.removed(ctx, c)
			if err != nil {
				return changed, err
			}
			if !slices.ContainsFunc(removed, func(r *api.Pin) bool { return sameRecord(r, now) }) {
				continue
			}
			// Removed only if cur still holds now when the removal is
			// packed: this carrier may have merged the removal but not
			// yet the pin that followed it (unpin, then pin again),
			// which its writer may have carried into cur meanwhile.
			rm := &op{cid: c, rmIf: now}
			if err := cur.submit(ctx, rm); err != nil && !errors.Is(err, ErrNotFound) {
				return changed, err
			}
			lastRm = max(lastRm, rm.seq)
			changed++
		}
	}
	return changed, nil
}

// CarryOverAll is CarryOver for every CID whose record differs between
// the two epochs: what a writer runs once when it moves to a newer epoch,
// so that every write it acknowledged in the old one reaches the new. It
// reads both pinsets once, in key order, side by side.
func CarryOverAll(ctx context.Context, old, cur *State, cov Coverage) (int, error) {
	type entry struct {
		key string
		sum [32]byte
	}
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	curEntries := make(chan entry, 1024)
	curErr := make(chan error, 1)
	go func() {
		defer close(curEntries)
		curErr <- cur.each(readCtx, func(k string, v []byte) error {
			select {
			case curEntries <- entry{k, sha256.Sum256(v)}:
				return nil
			case <-readCtx.Done():
				return readCtx.Err()
			}
		})
	}()
	var differ []api.Cid
	note := func(k string) error {
		c, ok := cidFromKey(k)
		if !ok {
			return fmt.Errorf("pinset key %q names no CID", k)
		}
		differ = append(differ, c)
		return nil
	}
	next, more := <-curEntries
	err := old.eachPacked(ctx, func(k string, v []byte) error {
		for more && next.key < k { // only in cur
			if err := note(next.key); err != nil {
				return err
			}
			next, more = <-curEntries
		}
		if more && next.key == k {
			same := next.sum == sha256.Sum256(v)
			next, more = <-curEntries
			if same {
				return nil
			}
		}
		return note(k)
	})
	for err == nil && more {
		err = note(next.key)
		next, more = <-curEntries
	}
	cancel()
	for range curEntries { // let the reader end
	}
	if err != nil {
		return 0, err
	}
	if err := <-curErr; err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return CarryOver(ctx, old, cur, differ, cov)
}

// sameRecord reports whether a and b are the same write of one CID.
func sameRecord(a, b *api.Pin) bool {
	return a.Cid.Equals(b.Cid.Cid) && a.Version == b.Version && a.Timestamp.Equal(b.Timestamp)
}

// removed returns the records of c this pinset held and no longer holds:
// the values of c's tombstoned elements, read from their delta blocks.
func (s *State) removed(ctx context.Context, c api.Cid) ([]*api.Pin, error) {
	key := pinKey(c).String()
	prefix := s.deps.Namespace + "/s/s" + key + "/"
	res, err := s.deps.Store.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []*api.Pin
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		id := strings.TrimPrefix(r.Key, prefix)
		if strings.Contains(id, "/") {
			continue // an element of a longer key
		}
		m, err := dshelp.DsKeyToMultihash(ds.NewKey(id))
		if err != nil {
			return nil, fmt.Errorf("element %s of %s: %w", id, c, err)
		}
		nd, err := s.deps.DAG.Get(ctx, cid.NewCidV1(cid.DagProtobuf, m))
		if err != nil {
			return nil, fmt.Errorf("delta %s of %s: %w", id, c, err)
		}
		d, err := deltaOf(nd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		for _, e := range d.GetElements() {
			if e.GetKey() != key {
				continue
			}
			p, err := DecodePin(e.GetValue())
			if err != nil {
				return nil, fmt.Errorf("delta %s, record of %s: %w", id, c, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// DropEpoch removes the pinset at ns — set entries, tombstones, heads,
// processed markers, journal markers — its delta blocks and its journal
// directory (journalDir, "" for none): what is left of an epoch once the
// newer one at newer is current. Blocks kept apart from ns (blocksNS,
// shared by every epoch) go one by one, those ns processed, except any
// the newer epoch processed too (a delta of the same bytes in both).
// Badger's value log files that are mostly garbage afterwards are
// rewritten at once. The pinset at ns must not be open.
func DropEpoch(ctx context.Context, store ds.Datastore, ns, blocksNS, newer, journalDir string) error {
	db, err := badgerOf(store)
	if err != nil {
		return err
	}
	l := newLayout(ns, blocksNS)
	if !strings.HasPrefix(l.blocks, l.ns) {
		keep := newer + "/b/"
		var drop [][]byte
		err := db.View(func(txn *badgerdb.Txn) error {
			return eachItem(txn, l.ns+"b/", false, func(item *badgerdb.Item) error {
				k := string(item.Key()[len(l.ns+"b/"):])
				if _, err := txn.Get([]byte(keep + k)); err == nil {
					return nil
				} else if !errors.Is(err, badgerdb.ErrKeyNotFound) {
					return err
				}
				drop = append(drop, []byte(l.blocks+k))
				return ctx.Err()
			})
		})
		if err != nil {
			return err
		}
		if err := deleteKeys(db, drop); err != nil {
			return err
		}
	}
	// A read at the newest timestamp, so that the compaction DropPrefix
	// runs below may drop every version up to the deletes above even if
	// no other read ran since (Badger keeps any version newer than the
	// oldest read it has seen end): a tombstone left in the tables keeps
	// the values Badger moved while collecting its value log for that
	// key, until some later compaction rewrites the table.
	if err := db.View(func(*badgerdb.Txn) error { return nil }); err != nil {
		return err
	}
	// DropPrefix blocks every write to the store while it runs (the
	// current epoch's merges wait meanwhile: Patient), and it is what
	// compacts level 0 away: deleting the keys one by one would leave them
	// there, tombstones and all, until Badger's level 0 holds 20 tables.
	if err := db.DropPrefix([]byte(l.ns)); err != nil {
		return err
	}
	if journalDir != "" {
		if err := os.RemoveAll(journalDir); err != nil {
			return err
		}
	}
	// The dropped values stay in Badger's value log files until they are
	// rewritten: rewrite them now rather than at the next periodic
	// collection. Badger learns which values are garbage when a compaction
	// drops their keys: the blocks were deleted key by key (the
	// blockstore is every epoch's), so compact first. DropPrefix flushed
	// the memtables, so every file but the one being written can go; a
	// file is rewritten if a twentieth of it is garbage (an epoch's drop
	// is rare, and what it leaves is most of every file written before
	// it). A failed compaction only leaves the space for later
	// collections: the epoch is gone either way.
	if err := db.Flatten(1); err != nil {
		logger.Warnf("compacting the store after dropping %s (its space is reclaimed later): %s", ns, err)
		return nil
	}
	collectValueLog(ctx, db, dropGarbage)
	return nil
}

// Shares of garbage that make a value log file worth rewriting: right
// after an epoch's drop, and in the periodic collections between drops.
const (
	dropGarbage     = 0.05
	periodicGarbage = 0.5
)

// CollectValueLog rewrites the store's value log files that are mostly
// garbage (what dropped epochs left in files still written to when they
// were dropped): a peer runs it every state.compact_check. It does
// nothing when no file is worth it.
func CollectValueLog(ctx context.Context, store ds.Datastore) {
	if db, err := badgerOf(store); err == nil {
		collectValueLog(ctx, db, periodicGarbage)
	}
}

// Settle gives back the space a quiet pinset's store and journal hold
// for nothing: the journal's active segment once everything in it is
// packed, then SettleStore. A peer runs it once each time its pinset has
// gone quiet.
func (s *State) Settle(ctx context.Context) error {
	s.ovMu.Lock()
	top := s.packedTop
	s.ovMu.Unlock()
	if err := s.jf.retire(top); err != nil {
		return err
	}
	if err := s.jf.release(top, func() error {
		return s.deps.Store.Sync(ctx, ds.NewKey(s.deps.Namespace))
	}); err != nil {
		return err
	}
	return SettleStore(ctx, s.deps.Store)
}

// SettleStore makes a quiet store give back the space its dead data
// holds. Badger collects only value log files older than the last flush
// of its memtables, and a store nobody writes to never flushes, so the
// files written since stay, garbage and all. SettleStore flushes (a
// DropPrefix of a prefix no key has: the one call that does) and
// rewrites every file a twentieth garbage; the rewrite moves live values
// into the newest file, past the flush, so it does so again while a
// round rewrote something (at most three rounds). The file being written
// is never collected: that is what ValueLogFileSize bounds. Writes wait
// while a flush runs.
func SettleStore(ctx context.Context, store ds.Datastore) error {
	db, err := badgerOf(store)
	if err != nil {
		return err
	}
	for range 3 {
		// A memtable with nothing in it is not flushed, and the head
		// Badger collects below is the one the last flush wrote: one
		// key under the prefix makes the flush happen, and the drop
		// takes the key away again.
		if err := db.Update(func(txn *badgerdb.Txn) error {
			return txn.Set(settleKey, nil)
		}); err != nil {
			return err
		}
		if err := db.DropPrefix(noKeyPrefix); err != nil {
			return err
		}
		n, err := collectValueLog(ctx, db, dropGarbage)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logger.Debugf("settling the store: %d value log files rewritten (%v)", n, err)
		if n == 0 {
			break
		}
	}
	return nil
}

// noKeyPrefix begins no key of the store (every key of a peer's store
// begins with "/", Badger's own with "!").
var (
	noKeyPrefix = []byte{0xff, 0x00}
	settleKey   = []byte{0xff, 0x00, 's'}
)

// collectValueLog rewrites value log files holding at least the share
// garbage of garbage. Badger looks at one or two files a call (the one
// its statistics say holds the most garbage, and one at random), so a
// call that finds nothing worth rewriting does not mean no file is: it
// stops after a few such calls in a row.
func collectValueLog(ctx context.Context, db *badgerdb.DB, garbage float64) (rewrites int, last error) {
	misses := 0
	for range 256 {
		if ctx.Err() != nil {
			return rewrites, ctx.Err()
		}
		switch err := db.RunValueLogGC(garbage); {
		case err == nil:
			misses = 0
			rewrites++
		case errors.Is(err, badgerdb.ErrNoRewrite) && misses < 3:
			misses++
		default:
			return rewrites, err // nothing more worth it, or a collection running
		}
	}
	return rewrites, nil
}

// deleteKeys deletes keys in one write batch; none opens no batch (see
// patientBatch.Commit: an empty batch's flush holds back compactions).
func deleteKeys(db *badgerdb.DB, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Heads are the pinset's current heads: what an epoch record names (the
// heads of a new epoch once the copy is in).
func (s *State) Heads(ctx context.Context) []cid.Cid {
	return s.crdt.InternalStats(ctx).Heads
}

// Merged reports whether this pinset has merged every delta under heads
// (walk). It reads only what is local; a block not here yet means false.
func (s *State) Merged(ctx context.Context, heads []cid.Cid) (bool, error) {
	return s.walk(ctx, heads, nil)
}

// History is how much of a pinset's store is history rather than live
// state: every element a key was ever given and every tombstone, against
// the live values (pins and admissions).
type History struct {
	Elements, Tombstones, Live int
}

// History counts the pinset's set entries (a scan of their keys; no
// values are read).
func (s *State) History(ctx context.Context) (History, error) {
	var h History
	db, err := badgerOf(s.deps.Store)
	if err != nil {
		return h, err
	}
	set := s.deps.Namespace + "/s/"
	err = db.View(func(txn *badgerdb.Txn) error {
		for _, r := range []struct {
			prefix string
			n      *int
			suffix string
		}{{set + "s/", &h.Elements, ""}, {set + "t/", &h.Tombstones, ""}, {set + "k/", &h.Live, "/v"}} {
			err := eachItem(txn, r.prefix, false, func(it *badgerdb.Item) error {
				if r.suffix == "" || strings.HasSuffix(string(it.Key()), r.suffix) {
					*r.n++
				}
				return ctx.Err()
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return h, err
}
