// Package crdtstate owns the pinset: typed Pin records kept in a go-ds-crdt
// Merkle-CRDT over Badger. Writes go through one writer loop that groups
// concurrent requests into a single delta and acknowledges them only after
// the commit is synced to disk. Reads and listings stream from the local
// replica.
package crdtstate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	badgerdb "github.com/dgraph-io/badger/v2"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/ipfs/go-datastore/query"
	badger "github.com/ipfs/go-ds-badger2"
	crdt "github.com/ipfs/go-ds-crdt"
	logging "github.com/ipfs/go-log/v2"

	"github.com/pinring/pinring/api"
)

var logger = logging.Logger("crdtstate")

// Errors.
var (
	ErrNotFound = errors.New("pin not found in the pinset")
	ErrClosed   = errors.New("pinset is closed")
)

const pinsPrefix = "/pins/"

// Deps are what the state needs from the peer that owns it.
type Deps struct {
	// Store is the peer's datastore (Badger); the state keeps its data
	// under Namespace in it.
	Store ds.Batching
	// Namespace is where the CRDT lives, e.g. /pinring/<cluster>/state.
	Namespace string
	// DAG stores and fetches the CRDT's delta blocks. nil: a local,
	// offline DAG service over Store (a single peer).
	DAG crdt.SessionDAGService
	// Broadcaster announces and receives heads. nil: offline.
	Broadcaster crdt.Broadcaster
	// OnChange is called after every change to the pinset, local or
	// remote, with the new record, or with pin == nil when the CID was
	// removed. It must not block.
	OnChange func(c api.Cid, pin *api.Pin)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// State is the replicated pinset.
type State struct {
	cfg  Config
	deps Deps
	crdt *crdt.Datastore
	ops  chan *op
	// toSync carries committed batches to the syncer, which fsyncs once
	// for everything waiting and then acknowledges it.
	toSync chan []*op
	stop   chan struct{}
	wg     sync.WaitGroup
	close  sync.Once
}

type op struct {
	pin  *api.Pin // nil for a removal
	cid  api.Cid
	err  error // outcome of applying the op, before the sync
	done chan error
}

// LocalDAG returns a DAG service kept in store under ns, with no network.
func LocalDAG(store ds.Batching, ns string) crdt.SessionDAGService {
	bs := blockstore.NewBlockstore(namespace.Wrap(store, ds.NewKey(ns)))
	return merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
}

// New opens the pinset. Close it before closing deps.Store.
func New(ctx context.Context, cfg Config, deps Deps) (*State, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Namespace == "" {
		return nil, errors.New("crdtstate: Store and Namespace are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.DAG == nil {
		deps.DAG = LocalDAG(deps.Store, deps.Namespace+"/blocks")
	}
	s := &State{cfg: cfg, deps: deps, ops: make(chan *op, cfg.BatchSize),
		toSync: make(chan []*op, 64), stop: make(chan struct{})}

	opts := crdt.DefaultOptions()
	opts.Logger = logging.Logger("crdt")
	opts.RebroadcastInterval = cfg.RebroadcastInterval.D()
	opts.RepairInterval = cfg.RepairInterval.D()
	opts.NumWorkers = cfg.DAGWorkers
	opts.PutHook = s.putHook
	opts.DeleteHook = s.deleteHook
	var bc crdt.Broadcaster
	if deps.Broadcaster != nil {
		bc = deps.Broadcaster
	}
	store, err := crdt.New(deps.Store, ds.NewKey(deps.Namespace), deps.DAG, bc, opts)
	if err != nil {
		return nil, fmt.Errorf("opening the CRDT pinset: %w", err)
	}
	s.crdt = store
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(s.toSync)
		s.writer()
	}()
	go func() {
		defer s.wg.Done()
		s.syncer()
	}()
	return s, nil
}

func pinKey(c api.Cid) ds.Key { return ds.RawKey(pinsPrefix + c.Key()) }

func cidFromKey(k string) (api.Cid, bool) {
	s, ok := strings.CutPrefix(k, pinsPrefix)
	if !ok {
		return api.Cid{}, false
	}
	c, err := cid.Decode(s)
	return api.NewCid(c), err == nil
}

func (s *State) putHook(k ds.Key, v []byte) {
	if s.deps.OnChange == nil {
		return
	}
	p, err := DecodePin(v)
	if err != nil {
		logger.Errorf("pinset entry %s: %s", k, err)
		return
	}
	s.deps.OnChange(p.Cid, p)
}

func (s *State) deleteHook(k ds.Key) {
	if s.deps.OnChange == nil {
		return
	}
	c, ok := cidFromKey(k.String())
	if !ok {
		return
	}
	// A delete may be superseded by a concurrent add: report what is
	// there now.
	p, err := s.Get(context.Background(), c)
	if err != nil {
		p = nil
	}
	s.deps.OnChange(c, p)
}

// Add puts (or replaces) a pin. It returns once the change is committed
// and synced to disk. The record's Version and Timestamp are set here.
func (s *State) Add(ctx context.Context, p *api.Pin) error {
	if err := p.Validate(); err != nil {
		return err
	}
	cp := *p
	return s.submit(ctx, &op{pin: &cp, cid: p.Cid})
}

// Rm removes a pin; ErrNotFound if it is not in the pinset.
func (s *State) Rm(ctx context.Context, c api.Cid) error {
	return s.submit(ctx, &op{cid: c})
}

func (s *State) submit(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	select {
	case s.ops <- o:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		// The write may still land; the caller was told it did not wait.
		return ctx.Err()
	}
}

// writer is the only goroutine that writes to the CRDT. It groups the
// requests waiting in the queue into one delta, commits it, syncs the
// datastore and then answers every request of the batch.
func (s *State) writer() {
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.stop:
			return
		}
		batch := []*op{first}
		var linger *time.Timer
	collect:
		for len(batch) < s.cfg.BatchSize {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
				continue
			default:
			}
			// The queue is empty. A lone write goes now; under load,
			// wait a little for more to fill the delta.
			if len(batch) == 1 || s.cfg.BatchAge == 0 {
				break
			}
			if linger == nil {
				linger = time.NewTimer(s.cfg.BatchAge.D())
			}
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			case <-linger.C:
				break collect
			case <-s.stop:
				break collect
			}
		}
		if linger != nil {
			linger.Stop()
		}
		s.commit(batch)
	}
}

// commit applies a batch to the CRDT as one delta and hands it to the
// syncer. While the syncer fsyncs, the writer already collects and applies
// the next batch: the disk wait and the CPU work overlap.
func (s *State) commit(batch []*op) {
	ctx := context.Background()
	b, err := s.crdt.Batch(ctx)
	if err != nil {
		finish(batch, err)
		return
	}
	// Records written earlier in this batch, so a CID written twice
	// gets consecutive versions.
	pending := make(map[string]*api.Pin)
	wrote := 0
	now := s.deps.Now().UTC()
	for _, o := range batch {
		key := pinKey(o.cid)
		prev, seen := pending[key.String()]
		if !seen {
			prev, err = s.get(ctx, key)
			if err != nil && !errors.Is(err, ErrNotFound) {
				o.err = err
				continue
			}
		}
		if o.pin == nil { // removal
			if prev == nil {
				o.err = fmt.Errorf("%w: %s", ErrNotFound, o.cid)
				continue
			}
			o.err = b.Delete(ctx, key)
			pending[key.String()] = nil
		} else {
			o.pin.Version = 1
			if prev != nil {
				o.pin.Version = prev.Version + 1
			}
			if o.pin.Timestamp.IsZero() {
				o.pin.Timestamp = now
			}
			o.err = b.Put(ctx, key, EncodePin(o.pin))
			pending[key.String()] = o.pin
		}
		if o.err == nil {
			wrote++
		}
	}
	if wrote > 0 {
		if err := b.Commit(ctx); err != nil {
			err = fmt.Errorf("committing %d pinset changes: %w", wrote, err)
			for _, o := range batch {
				if o.err == nil {
					o.err = err
				}
			}
		}
	}
	s.toSync <- batch
}

// syncer acknowledges committed batches after one fsync for all of those
// waiting.
func (s *State) syncer() {
	ctx := context.Background()
	for batch := range s.toSync {
		waiting := [][]*op{batch}
	more:
		for {
			select {
			case b, ok := <-s.toSync:
				if !ok {
					break more
				}
				waiting = append(waiting, b)
			default:
				break more
			}
		}
		err := s.crdt.Sync(ctx, ds.NewKey("/"))
		if err != nil {
			err = fmt.Errorf("syncing the pinset to disk: %w", err)
		}
		for _, b := range waiting {
			for _, o := range b {
				if o.err == nil {
					o.err = err
				}
				o.done <- o.err
			}
		}
	}
}

func finish(batch []*op, err error) {
	for _, o := range batch {
		o.done <- err
	}
}

// Get returns the pin for c, or ErrNotFound.
func (s *State) Get(ctx context.Context, c api.Cid) (*api.Pin, error) {
	p, err := s.get(ctx, pinKey(c))
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, c)
	}
	return p, nil
}

// get returns nil, ErrNotFound when absent.
func (s *State) get(ctx context.Context, key ds.Key) (*api.Pin, error) {
	v, err := s.crdt.Get(ctx, key)
	if errors.Is(err, ds.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return DecodePin(v)
}

// Has reports whether c is in the pinset.
func (s *State) Has(ctx context.Context, c api.Cid) (bool, error) {
	return s.crdt.Has(ctx, pinKey(c))
}

// List streams every pin into out, in key order, and closes out. It stops
// early when ctx ends.
func (s *State) List(ctx context.Context, out chan<- api.Pin) error {
	defer close(out)
	return s.each(ctx, func(_ string, v []byte) error {
		p, err := DecodePin(v)
		if err != nil {
			return err
		}
		select {
		case out <- *p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// each calls fn for every pin record, in key order.
//
// It reads the CRDT set's value entries straight from the datastore
// (<namespace>/s/k/<key>/v) instead of through crdt.Query: the entries are
// the same — go-ds-crdt writes a value entry only for keys that are present
// and removes it when they are tombstoned — and skipping its two channel
// hops makes listing about twice as fast. TestEachMatchesCRDTQuery guards
// this against a go-ds-crdt layout change.
//
// On Badger it walks a read-only transaction's iterator directly, without
// any channel, and reads values only for the value entries. fn must not keep
// value after it returns.
func (s *State) each(ctx context.Context, fn func(key string, value []byte) error) error {
	prefix := s.deps.Namespace + "/s/k" + pinsPrefix
	if bs, ok := s.deps.Store.(*badger.Datastore); ok {
		return s.eachBadger(ctx, bs.DB, prefix, fn)
	}
	res, err := s.deps.Store.Query(ctx, query.Query{Prefix: prefix})
	if err != nil {
		return err
	}
	trim := s.deps.Namespace + "/s/k"
	return forEachResult(ctx, res, func(k string) (string, bool) {
		key, ok := strings.CutSuffix(k, "/v") // skip the priority entries
		return strings.TrimPrefix(key, trim), ok
	}, fn)
}

// forEachResult calls fn for every result whose key maps to a pin key.
func forEachResult(ctx context.Context, res query.Results, key func(string) (string, bool), fn func(string, []byte) error) error {
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		k, ok := key(r.Key)
		if !ok {
			continue
		}
		if err := fn(k, r.Value); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *State) eachBadger(ctx context.Context, db *badgerdb.DB, prefix string, fn func(string, []byte) error) error {
	txn := db.NewTransaction(false)
	defer txn.Discard()
	opts := badgerdb.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	trim := len(s.deps.Namespace + "/s/k")
	n := 0
	for it.Seek(opts.Prefix); it.ValidForPrefix(opts.Prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		if !bytes.HasSuffix(k, []byte("/v")) {
			continue // the priority entry
		}
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		key := string(k[trim : len(k)-2])
		if err := item.Value(func(v []byte) error { return fn(key, v) }); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// eachViaCRDT is each through go-ds-crdt's own query (for the guard test).
func (s *State) eachViaCRDT(ctx context.Context, fn func(key string, value []byte) error) error {
	res, err := s.crdt.Query(ctx, query.Query{Prefix: pinsPrefix})
	if err != nil {
		return err
	}
	return forEachResult(ctx, res, func(k string) (string, bool) { return k, true }, fn)
}

// Digest hashes the sorted pinset: peers holding the same pins, with the
// same records, give the same digest.
func (s *State) Digest(ctx context.Context) (api.StateDigest, error) {
	type entry struct {
		key string
		sum [32]byte
	}
	var (
		entries []entry
		sorted  = true
	)
	err := s.each(ctx, func(k string, v []byte) error {
		if n := len(entries); n > 0 && entries[n-1].key >= k {
			sorted = false
		}
		entries = append(entries, entry{k, sha256.Sum256(v)})
		return nil
	})
	if err != nil {
		return api.StateDigest{}, err
	}
	if !sorted {
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	}
	h := sha256.New()
	for _, e := range entries {
		h.Write([]byte(e.key))
		h.Write([]byte{0})
		h.Write(e.sum[:])
	}
	return api.StateDigest{Digest: hex.EncodeToString(h.Sum(nil)), Pins: uint64(len(entries))}, nil
}

// Close stops the writer, then the CRDT store. It does not close deps.Store.
func (s *State) Close() error {
	var err error
	s.close.Do(func() {
		close(s.stop)
		s.wg.Wait()
		// Fail whatever is still queued.
		for {
			select {
			case o := <-s.ops:
				o.done <- ErrClosed
				continue
			default:
			}
			break
		}
		err = s.crdt.Close()
	})
	return err
}

// Height is the highest delta height this replica has (0 when empty).
func (s *State) Height(ctx context.Context) uint64 {
	return s.crdt.InternalStats(ctx).MaxHeight
}
