package crdtstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	badgerdb "github.com/dgraph-io/badger/v2"
	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// CurrentEpoch is what a peer keeps of the epoch it reads and writes: the
// record and its signed envelope (to repeat to others). Epoch 0 has none.
type CurrentEpoch struct {
	Record   api.Epoch `json:"record"`
	Envelope []byte    `json:"envelope"`
}

// N is the epoch number.
func (c CurrentEpoch) N() uint64 { return c.Record.Epoch }

// maxCurrentEpoch bounds the stored record and envelope (heads and marks).
const maxCurrentEpoch = 256 << 10

func currentEpochKey(ns string) ds.Key { return ds.NewKey(ns).ChildString("epoch") }

// LoadCurrentEpoch reads the current epoch of the pinsets under ns (the
// cluster's namespace, /pinring/<cluster>): the zero value for epoch 0.
func LoadCurrentEpoch(ctx context.Context, store ds.Datastore, ns string) (CurrentEpoch, error) {
	var c CurrentEpoch
	b, err := store.Get(ctx, currentEpochKey(ns))
	if errors.Is(err, ds.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if len(b) > maxCurrentEpoch {
		return c, fmt.Errorf("the current epoch's record is %d bytes", len(b))
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("the current epoch's record: %w", err)
	}
	return c, nil
}

// SaveCurrentEpoch makes c the current epoch, durably: the moment a peer
// switches (ADR 9).
func SaveCurrentEpoch(ctx context.Context, store ds.Datastore, ns string, c CurrentEpoch) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	k := currentEpochKey(ns)
	if err := store.Put(ctx, k, b); err != nil {
		return err
	}
	return store.Sync(ctx, k)
}

// StateNamespace is where epoch e of cluster namespace ns's pinset lives.
func StateNamespace(ns string, e uint64) string { return EpochNamespace(ns+"/state", e) }

// StartEpoch fills next, the empty pinset of the epoch after old's, with a
// copy of old's live pins (CopyLive, old packed first) and returns its
// record, sealed by seal (the maker's write key): a writer's part of
// starting an epoch, online or on a stopped peer. prev is the record of
// old's epoch (zero for epoch 0), whose marks the new one keeps. Saving the
// record as current is the caller's.
//
// Before the copy it takes old's heads and waits (up to mergeWait) until
// it has merged everything below them, then marks, per origin, the
// highest Seq found there (Coverage): the copy, read after that, reflects
// all of it.
func StartEpoch(ctx context.Context, old, next *State, prev api.Epoch, e uint64, by peer.ID, now time.Time, seal func([]byte) []byte) (CurrentEpoch, CopyStats, error) {
	if err := old.Flush(ctx); err != nil {
		return CurrentEpoch{}, CopyStats{}, err
	}
	marks := MarksOf(prev.Marks)
	giveUp := time.Now().Add(mergeWait)
	for {
		reach, ok, err := old.Reach(ctx, old.Heads(ctx))
		if err != nil {
			return CurrentEpoch{}, CopyStats{}, fmt.Errorf("reading what epoch %d holds of each writer: %w", e-1, err)
		}
		if ok {
			marks.Raise(reach)
			break
		}
		if time.Now().After(giveUp) {
			return CurrentEpoch{}, CopyStats{}, fmt.Errorf("epoch %d has not merged everything below its heads after %s: a copy now could miss a write (try again once it has synced)", e-1, mergeWait)
		}
		select {
		case <-ctx.Done():
			return CurrentEpoch{}, CopyStats{}, ctx.Err()
		case <-time.After(mergeWait / 60):
		}
	}
	if len(marks) > api.MaxEpochMarks {
		return CurrentEpoch{}, CopyStats{}, fmt.Errorf("%d writer peers have written to this pinset, and an epoch record lists at most %d", len(marks), api.MaxEpochMarks)
	}
	st, err := CopyLive(ctx, old, next)
	if err == nil {
		err = next.Flush(ctx)
	}
	if err != nil {
		return CurrentEpoch{}, st, fmt.Errorf("copying the live pinset into epoch %d: %w", e, err)
	}
	rec := api.Epoch{Epoch: e, Digest: st.Digest, Made: now.UTC(), By: by, Marks: marks.List()}
	for _, h := range next.Heads(ctx) {
		rec.Heads = append(rec.Heads, api.NewCid(h))
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return CurrentEpoch{}, st, err
	}
	return CurrentEpoch{Record: rec, Envelope: seal(b)}, st, nil
}

// mergeWait is how long StartEpoch waits for the old pinset to have
// merged what its heads name.
var mergeWait = 30 * time.Second

// EpochsAfter lists the epochs after e whose pinset has anything in store
// under cluster namespace ns: what a stop in the middle of a copy (a maker)
// or of a sync (a peer adopting a newer epoch) left behind. A copy never
// announced must not be reopened later as if it were another maker's epoch
// of the same number, so a peer drops these at its start.
func EpochsAfter(store ds.Datastore, ns string, e uint64) ([]uint64, error) {
	db, err := badgerOf(store)
	if err != nil {
		return nil, err
	}
	prefix := StateNamespace(ns, 0) + epochSuffix
	var out []uint64
	err = db.View(func(txn *badgerdb.Txn) error {
		opts := badgerdb.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(opts.Prefix); it.ValidForPrefix(opts.Prefix); {
			rest := string(it.Item().Key()[len(prefix):])
			num, _, _ := strings.Cut(rest, "/")
			n, err := strconv.ParseUint(num, 10, 64)
			if err != nil {
				return fmt.Errorf("a key under %s names no epoch: %q", prefix, it.Item().Key())
			}
			if n > e {
				out = append(out, n)
			}
			// On to the next epoch's keys: past every key of this one.
			it.Seek([]byte(prefix + num + "/\xff"))
		}
		return nil
	})
	return out, err
}
