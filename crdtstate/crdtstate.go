// Package crdtstate owns the pinset: typed Pin records kept in a go-ds-crdt
// Merkle-CRDT over Badger. Writes go through one writer loop that checks
// them and hands them to the journal (journal.go), which acknowledges each
// only once its group is fsynced; a packer then commits the journaled
// writes, a key's latest change each, as CRDT deltas that other peers
// replicate, and reads see journaled writes through an overlay until then
// (docs/architecture.md, ADR 0004). Reads and listings stream from the
// local replica.
package crdtstate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	crdt "github.com/ipfs/go-ds-crdt"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

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
	// JournalDir is the directory of the write journal's files (created
	// if needed), one per Namespace; JournalDir of a datastore gives the
	// usual place.
	JournalDir string
	// DAG stores and fetches the CRDT's delta blocks. nil: a local,
	// offline DAG service over Store (a single peer).
	DAG crdt.SessionDAGService
	// BlocksNamespace is where DAG keeps its blocks in Store (a boxo
	// blockstore under it), for snapshots. "": Namespace + "/blocks",
	// where the local DAG keeps them.
	BlocksNamespace string
	// Broadcaster announces and receives heads. nil: offline.
	Broadcaster crdt.Broadcaster
	// OnChange is called after every change to the pinset, with the new
	// record, or with pin == nil when the CID was removed: for a local
	// write once it is acknowledged, for a remote one once its delta is
	// applied. It must not block.
	OnChange func(c api.Cid, pin *api.Pin)
	// OnAdmissions is called when an admission record changes (see
	// PutAdmission); it must not block.
	OnAdmissions func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Origin is this peer, and Epoch the epoch this pinset is (ADR 9):
	// every record written here is stamped with them and the journal's
	// sequence number (api.Pin Origin, Seq). "" writes unstamped records.
	Origin peer.ID
	Epoch  uint64
}

// seqEpochShift places the epoch above the journal's sequence number in a
// record's Seq, so that one origin's stamps increase across epochs.
const seqEpochShift = 40

// Stamp is the Seq of the write with journal sequence number seq to the
// pinset of epoch e.
func Stamp(e, seq uint64) uint64 { return e<<seqEpochShift | seq&(1<<seqEpochShift-1) }

// State is the replicated pinset.
type State struct {
	cfg  Config
	deps Deps
	crdt *crdt.Datastore
	// keys is the datastore the CRDT writes through, which answers
	// lookups of set keys never written (keyfilter.go).
	keys *keyFilter
	ops  chan *op
	// toSync carries journaled batches to the syncer, which writes and
	// fsyncs once for everything waiting and then acknowledges it.
	toSync chan []*op
	// toPack carries acknowledged changes to the packer, which commits
	// them to the CRDT in large deltas.
	toPack chan []*op
	seq    uint64 // last journal sequence number; writer only
	jf     *journalFile
	acked  atomic.Uint64 // writes acknowledged (journaled and synced)
	stop   chan struct{}
	wg     sync.WaitGroup
	close  sync.Once

	qMu         sync.Mutex
	quarantined int           // changes quarantined since opening
	qLast       []Quarantined // the latest few

	ovMu    sync.RWMutex
	overlay map[string]overlayEntry // changes not yet packed, by key
	// conditional removals not yet packed (not in the overlay: whether
	// they apply is decided when packed), by key: their latest seq
	conds map[string]uint64
	// packedTop is the seq of the latest change packed
	packedTop uint64
	packed    chan struct{} // closed and replaced after every pack
}

type op struct {
	pin  *api.Pin // nil for a removal
	cid  api.Cid
	seq  uint64
	err  error // outcome of journaling the op, before the sync
	done chan error
	k    string // pinKey(cid).String(), once asked for
	// set aside: quarantined, not packed (see quarantine)
	setAside bool
	// verbatim: the pin's Version and Timestamp are kept as they are (a
	// copy of a record made elsewhere: epoch.go)
	verbatim bool
	// rmIf: a removal that applies only if, when it is packed, the
	// pinset's record of the CID is still this one (epoch.go's carry-over
	// of a late removal: a newer record that arrived meanwhile stays)
	rmIf *api.Pin
}

// key is the op's pinset key (encoding a CID costs a microsecond, and an
// op's key is needed when journaling, in the overlay and when packing).
func (o *op) key() string {
	if o.k == "" {
		o.k = pinKey(o.cid).String()
	}
	return o.k
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
	if deps.Store == nil || deps.Namespace == "" || deps.JournalDir == "" {
		return nil, errors.New("crdtstate: Store, Namespace and JournalDir are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	deps.Store = Patient(deps.Store)
	if deps.DAG == nil {
		deps.DAG = LocalDAG(deps.Store, deps.Namespace+"/blocks")
	}
	if _, err := DropPartialSnapshot(ctx, deps.Store, deps.Namespace, deps.BlocksNamespace); err != nil {
		return nil, err
	}
	if err := checkFormat(ctx, deps.Store, deps.Namespace); err != nil {
		return nil, err
	}
	s := &State{cfg: cfg, deps: deps, ops: make(chan *op, cfg.BatchSize),
		toSync: make(chan []*op, 64), toPack: make(chan []*op, 1024), stop: make(chan struct{}),
		overlay: make(map[string]overlayEntry), conds: make(map[string]uint64), packed: make(chan struct{})}

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
	s.keys = newKeyFilter(ctx, deps.Store, deps.Namespace+"/s/", deps.Namespace+"/s/s/")
	store, err := crdt.New(s.keys, ds.NewKey(deps.Namespace), deps.DAG, bc, opts)
	if err != nil {
		s.keys.stop()
		return nil, fmt.Errorf("opening the CRDT pinset: %w", err)
	}
	s.crdt = store
	replay, err := s.replayJournal(ctx)
	if err != nil {
		store.Close()
		s.keys.stop()
		return nil, fmt.Errorf("opening the pinset journal in %s: %w", deps.JournalDir, err)
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		defer close(s.toSync)
		s.writer()
	}()
	go func() {
		defer s.wg.Done()
		defer close(s.toPack)
		s.syncer()
	}()
	go func() {
		defer s.wg.Done()
		s.packer(replay)
	}()
	return s, nil
}

// JournalDir is where a State over the Badger datastore in datastoreDir
// keeps the journal of namespace ns: a directory inside the datastore's,
// so that whatever moves or deletes the datastore takes it along.
func JournalDir(datastoreDir, ns string) string {
	return filepath.Join(datastoreDir, "journal", strings.ReplaceAll(strings.Trim(ns, "/"), "/", "_"))
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

// unpacked reports whether k has a local change not yet packed. Changes
// to such a key are not reported: what reads see is the local change,
// reported when it was acknowledged. (If a concurrent remote write wins
// over it once packed, the tracker's recover pass catches up.)
func (s *State) unpacked(k ds.Key) bool {
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	_, ok := s.overlay[k.String()]
	return ok
}

func (s *State) putHook(k ds.Key, v []byte) {
	if isAdmissionKey(k) {
		s.admissionChanged()
		return
	}
	if s.deps.OnChange == nil {
		return
	}
	if s.unpacked(k) {
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
	if isAdmissionKey(k) {
		s.admissionChanged()
		return
	}
	if s.deps.OnChange == nil {
		return
	}
	if s.unpacked(k) {
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
// and synced to disk. The record's Version and Timestamp are set here, and
// written back into p when Add succeeds.
func (s *State) Add(ctx context.Context, p *api.Pin) error {
	if err := p.Validate(); err != nil {
		return err
	}
	cp := *p
	if err := s.submit(ctx, &op{pin: &cp, cid: p.Cid}); err != nil {
		return err
	}
	p.Version, p.Timestamp, p.Origin, p.Seq = cp.Version, cp.Timestamp, cp.Origin, cp.Seq
	return nil
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

// writer is the only goroutine that journals changes. It groups the
// requests waiting in the queue, hands their records to the journal and
// the group to the syncer, which writes and fsyncs; it never waits for the
// disk itself.
func (s *State) writer() {
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.stop:
			return
		}
		batch := []*op{first}
	collect:
		for len(batch) < s.cfg.BatchSize {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break collect
			}
		}
		s.journal(batch)
		s.toSync <- batch
	}
}

// journal checks every op against the current pinset, sets versions and
// timestamps, and writes the batch to the journal. The overlay shows the
// changes from here on.
func (s *State) journal(batch []*op) {
	ctx := context.Background()
	var records []byte
	var err error
	// Records written earlier in this batch, so a CID written twice
	// gets consecutive versions.
	pending := make(map[string]*api.Pin)
	now := s.deps.Now().UTC()
	seq := s.seq
	for _, o := range batch {
		key := o.key()
		prev, seen := pending[key]
		if !seen {
			prev, err = s.lookup(ctx, ds.RawKey(key))
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
		} else if !o.verbatim {
			o.pin.Version = 1
			if prev != nil {
				o.pin.Version = prev.Version + 1
			}
			if o.pin.Timestamp.IsZero() {
				o.pin.Timestamp = now
			}
		}
		seq++
		o.seq = seq
		if o.pin != nil && !o.verbatim && s.deps.Origin != "" {
			o.pin.Origin, o.pin.Seq = s.deps.Origin, Stamp(s.deps.Epoch, seq)
		}
		records = appendJournalRecord(records, o)
		if o.rmIf == nil { // its outcome is known when packed
			pending[key] = o.pin
		}
	}
	if seq == s.seq {
		return // nothing to write
	}
	if err := s.jf.append(records, s.seq+1, seq); err != nil {
		setErr(batch, fmt.Errorf("journaling %d pinset changes: %w", len(batch), err))
		return
	}
	s.seq = seq
	s.ovMu.Lock()
	for _, o := range batch {
		if o.err == nil {
			if o.rmIf == nil {
				s.overlay[o.key()] = overlayEntry{pin: o.pin, seq: o.seq}
			} else {
				s.conds[o.key()] = o.seq // decided when packed
			}
		}
	}
	s.ovMu.Unlock()
}

// lastSeq is the highest journal sequence number in batch (0: nothing in
// it was journaled).
func lastSeq(batch []*op) uint64 {
	var last uint64
	for _, o := range batch {
		last = max(last, o.seq)
	}
	return last
}

func setErr(batch []*op, err error) {
	for _, o := range batch {
		if o.err == nil {
			o.err = err
		}
	}
}

// syncer acknowledges journaled batches after one write and one fsync for
// all of those waiting (when fewer writes wait than it answered last time,
// it first waits up to SyncWait for as many), then passes them on to the
// packer.
func (s *State) syncer() {
	answered := 0 // writes the last fsync acknowledged
	// received is the highest sequence number handed over, or synced
	// before the syncer started (records moved at open).
	received := s.jf.durable.Load()
	var wait *time.Timer
	for batch := range s.toSync {
		var waiting [][]*op
		n := 0
		take := func(b []*op) {
			waiting = append(waiting, b)
			n += len(b)
			received = max(received, lastSeq(b))
		}
		take(batch)
		if n < answered && s.cfg.SyncWait > 0 {
			// The writers answered last time are likely on their way
			// back: one fsync for all of them costs far less than one
			// for each few (group commit, bounded by SyncWait).
			if wait == nil {
				wait = time.NewTimer(s.cfg.SyncWait.D())
			} else {
				wait.Reset(s.cfg.SyncWait.D())
			}
		gather:
			for n < answered {
				select {
				case b, ok := <-s.toSync:
					if !ok {
						break gather
					}
					take(b)
				case <-wait.C:
					break gather
				}
			}
			wait.Stop()
		}
	more:
		for {
			select {
			case b, ok := <-s.toSync:
				if !ok {
					break more
				}
				take(b)
			default:
				break more
			}
		}
		err := s.jf.sync()
		if err != nil {
			err = fmt.Errorf("syncing the pinset journal to disk: %w", err)
		} else {
			// The writer may have journaled more groups since they were
			// gathered, and that fsync wrote them too: they are part of
			// this group (it is on its way: the writer hands every group
			// over after journaling it).
			for received < s.jf.durable.Load() {
				b, ok := <-s.toSync
				if !ok {
					break
				}
				take(b)
			}
		}
		answered = n
		var ok []*op
		for _, b := range waiting {
			for _, o := range b {
				if o.err == nil {
					o.err = err
				}
				if o.err == nil {
					ok = append(ok, o)
					s.acked.Add(1) // counted before the writer hears
				}
				if o.done != nil {
					o.done <- o.err
				}
			}
		}
		// Every writer of the group answered first, then the hook.
		if s.deps.OnChange != nil {
			for _, o := range ok {
				s.deps.OnChange(o.cid, o.pin)
			}
		}
		if len(ok) > 0 {
			s.toPack <- ok
		}
	}
}

// packer commits acknowledged changes to the CRDT: it gathers them for up
// to BatchAge (or until BatchSize are waiting) and commits each key's
// latest change in one delta.
func (s *State) packer(pending []*op) {
	retry := time.Second
	failures := 0
	for {
		var linger <-chan time.Time
		if len(pending) > 0 && len(pending) < s.cfg.BatchSize && s.cfg.BatchAge > 0 {
			linger = time.After(s.cfg.BatchAge.D())
		}
	gather:
		for len(pending) < s.cfg.BatchSize {
			if len(pending) == 0 {
				ops, ok := <-s.toPack
				if !ok {
					return
				}
				pending = append(pending, ops...)
				if s.cfg.BatchAge > 0 && len(pending) < s.cfg.BatchSize {
					linger = time.After(s.cfg.BatchAge.D())
				}
				continue
			}
			if linger == nil {
				// No lingering: take what is queued now.
				select {
				case ops, ok := <-s.toPack:
					if !ok {
						break gather
					}
					pending = append(pending, ops...)
					continue
				default:
					break gather
				}
			}
			select {
			case ops, ok := <-s.toPack:
				if !ok {
					break gather
				}
				pending = append(pending, ops...)
			case <-linger:
				break gather
			}
		}
		if err := s.pack(pending); err != nil {
			failures++
			// After a few failures, find out whether some records fail
			// alone: those are quarantined, so that they never hold the
			// others back. When every record fails, the trouble is not
			// theirs (a full disk): all stay journaled and are retried.
			if failures >= quarantineAfter && s.isolate(pending) {
				failures, retry, pending = 0, time.Second, nil
				continue
			}
			// The changes stay journaled and in the overlay; try again.
			logger.Errorf("packing %d pinset changes into a delta (retrying in %s): %s", len(pending), retry, err)
			select {
			case <-time.After(retry):
			case <-s.stop:
				return // replayed at the next start
			}
			retry = min(2*retry, time.Minute)
			continue
		}
		failures, retry = 0, time.Second
		pending = nil
	}
}

// pack commits ops (in sequence order) as one CRDT delta, then moves the
// journal watermark past them and drops them from the journal and the
// overlay.
// stillHolds reports whether the record of key k is want once the op
// before in the same pack (nil: none) is applied.
func (s *State) stillHolds(ctx context.Context, k string, before *op, want *api.Pin) (bool, error) {
	if before != nil {
		return before.pin != nil && sameRecord(before.pin, want), nil
	}
	v, err := s.crdt.Get(ctx, ds.RawKey(k))
	switch {
	case errors.Is(err, ds.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	p, err := DecodePin(v)
	if err != nil {
		return false, nil // not a record this pack could have removed
	}
	return sameRecord(p, want), nil
}

func (s *State) pack(ops []*op) error {
	ctx := context.Background()
	last := make(map[string]*op, len(ops))
	var bad []*op
	var whyBad []error
	for _, o := range ops {
		if o.setAside {
			continue
		}
		if err := packable(o); err != nil {
			bad, whyBad = append(bad, o), append(whyBad, err)
			continue
		}
		if o.rmIf != nil {
			still, err := s.stillHolds(ctx, o.key(), last[o.key()], o.rmIf)
			if err != nil {
				return err
			}
			if !still {
				continue
			}
		}
		last[o.key()] = o
	}
	// Each key's latest record, encoded once.
	vals := make(map[string][]byte, len(last))
	for k, o := range last {
		if o.pin == nil {
			continue
		}
		v := EncodePin(o.pin)
		if len(v) > maxRecordBytes {
			bad, whyBad = append(bad, o), append(whyBad, fmt.Errorf("its record is %d bytes, at most %d", len(v), maxRecordBytes))
			delete(last, k)
			continue
		}
		vals[k] = v
	}
	// Records that cannot be stored are set aside before the delta is
	// made (in the file, before the watermark passes them).
	s.quarantine(bad, whyBad)
	keys := make([]string, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b, err := s.crdt.Batch(ctx)
	if err != nil {
		return err
	}
	wrote := 0
	for _, k := range keys {
		o := last[k]
		if o.pin != nil {
			err = b.Put(ctx, ds.RawKey(k), vals[k])
		} else {
			var has bool
			if has, err = s.crdt.Has(ctx, ds.RawKey(k)); err == nil && has {
				err = b.Delete(ctx, ds.RawKey(k))
			}
			if !has {
				continue // added and removed before being packed
			}
		}
		if err != nil {
			return err
		}
		wrote++
	}
	if wrote > 0 {
		if err := b.Commit(ctx); err != nil {
			return err
		}
	}
	top := ops[len(ops)-1].seq
	// After the delta's writes in Badger's log: durable only if they are.
	mark := binary.BigEndian.AppendUint64(nil, top)
	if err := s.deps.Store.Put(ctx, s.watermarkKey(), mark); err != nil {
		return err
	}
	if err := s.jf.release(top, func() error {
		return s.deps.Store.Sync(ctx, ds.NewKey(s.deps.Namespace))
	}); err != nil {
		logger.Warnf("deleting packed journal segments (retried after the next delta): %s", err)
	}
	s.ovMu.Lock()
	for _, k := range keys {
		if e, ok := s.overlay[k]; ok && e.seq <= top {
			delete(s.overlay, k)
		}
	}
	for k, seq := range s.conds {
		if seq <= top {
			delete(s.conds, k)
		}
	}
	s.packedTop = max(s.packedTop, top)
	close(s.packed)
	s.packed = make(chan struct{})
	s.ovMu.Unlock()
	return nil
}

// waitPacked waits until change seq is packed (or set aside).
func (s *State) waitPacked(ctx context.Context, seq uint64) error {
	for {
		s.ovMu.RLock()
		top, ch := s.packedTop, s.packed
		s.ovMu.RUnlock()
		if top >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return ErrClosed
		}
	}
}

// Flush waits until every change acknowledged so far is part of the CRDT
// (and so announced to other peers).
func (s *State) Flush(ctx context.Context) error {
	for {
		s.ovMu.RLock()
		n, ch := len(s.overlay)+len(s.conds), s.packed
		s.ovMu.RUnlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return ErrClosed
		}
	}
}

// Get returns the pin for c, or ErrNotFound.
func (s *State) Get(ctx context.Context, c api.Cid) (*api.Pin, error) {
	p, err := s.lookup(ctx, pinKey(c))
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
	key := pinKey(c)
	s.ovMu.RLock()
	e, ok := s.overlay[key.String()]
	s.ovMu.RUnlock()
	if ok {
		return e.pin != nil, nil
	}
	return s.crdt.Has(ctx, key)
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

// Each calls fn with every pin, decoding in another goroutine (List) so
// that decoding and fn overlap; an error from fn stops it and is returned.
func (s *State) Each(ctx context.Context, fn func(api.Pin) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan api.Pin, 1024)
	errc := make(chan error, 1)
	go func() { errc <- s.List(ctx, out) }()
	var ferr error
	for pin := range out {
		if ferr == nil {
			if ferr = fn(pin); ferr != nil {
				cancel() // List stops and closes out
			}
		}
	}
	if err := <-errc; ferr == nil {
		return err
	}
	return ferr
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
	// The overlay is read before the CRDT: a change packed in between is
	// then read from the overlay, never missed.
	ov, keys := s.overlaySnapshot()
	if len(keys) == 0 {
		return s.eachPacked(ctx, fn)
	}
	wrapped, flush := withOverlay(ov, keys, fn)
	if err := s.eachPacked(ctx, wrapped); err != nil {
		return err
	}
	return flush()
}

// eachPacked is each over the CRDT's records only.
func (s *State) eachPacked(ctx context.Context, fn func(key string, value []byte) error) error {
	prefix := s.deps.Namespace + "/s/k" + pinsPrefix
	if db, err := badgerOf(s.deps.Store); err == nil {
		return s.eachBadger(ctx, db, prefix, fn)
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
	trim := len(s.deps.Namespace + "/s/k")
	n := 0
	err := eachItem(txn, prefix, false, func(item *badgerdb.Item) error {
		k := item.Key()
		if !bytes.HasSuffix(k, []byte("/v")) {
			return nil // the priority entry
		}
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		key := string(k[trim : len(k)-2])
		return item.Value(func(v []byte) error { return fn(key, v) })
	})
	if err != nil {
		return err
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
// same records, give the same digest. Listings come in key order from
// Badger, so the hash is computed as they stream, in constant memory; only
// a datastore that lists out of order makes it collect and sort.
func (s *State) Digest(ctx context.Context) (api.StateDigest, error) {
	h := newDigester()
	var last string
	inOrder := errors.New("out of order")
	err := s.each(ctx, func(k string, v []byte) error {
		if h.n > 0 && k <= last {
			return inOrder
		}
		last = k
		h.add(k, v)
		return nil
	})
	if errors.Is(err, inOrder) {
		return s.sortedDigest(ctx)
	}
	if err != nil {
		return api.StateDigest{}, err
	}
	return h.sum(), nil
}

// digester hashes pinset entries given in key order, as Digest does.
type digester struct {
	h hash.Hash
	n uint64
}

func newDigester() *digester { return &digester{h: sha256.New()} }

func (d *digester) add(k string, v []byte) { d.addSum(k, sha256.Sum256(v)) }

// addSum is add with the value's SHA-256 already computed.
func (d *digester) addSum(k string, sum [32]byte) {
	d.h.Write([]byte(k))
	d.h.Write([]byte{0})
	d.h.Write(sum[:])
	d.n++
}

func (d *digester) sum() api.StateDigest {
	return api.StateDigest{Digest: hex.EncodeToString(d.h.Sum(nil)), Pins: d.n}
}

// sortedDigest is Digest for a listing that is not in key order.
func (s *State) sortedDigest(ctx context.Context) (api.StateDigest, error) {
	type entry struct {
		key string
		sum [32]byte
	}
	var entries []entry
	err := s.each(ctx, func(k string, v []byte) error {
		entries = append(entries, entry{k, sha256.Sum256(v)})
		return nil
	})
	if err != nil {
		return api.StateDigest{}, err
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	h := newDigester()
	for _, e := range entries {
		h.addSum(e.key, e.sum)
	}
	return h.sum(), nil
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
		err = errors.Join(s.crdt.Close(), s.jf.close())
		s.keys.stop()
	})
	return err
}

// Height is the highest delta height this replica has (0 when empty).
// Stats are the CRDT's heads, highest delta and DAG jobs waiting to be
// processed (a measure of how far behind the sync is).
func (s *State) Stats(ctx context.Context) (heads int, height uint64, queued int) {
	st := s.crdt.InternalStats(ctx)
	return len(st.Heads), st.MaxHeight, st.QueuedJobs
}

// Unpacked is how many acknowledged changes are not yet packed into a
// CRDT delta (so not yet announced to other peers).
func (s *State) Unpacked() int {
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	return len(s.overlay)
}

// JournalStats returns how many fsyncs of the journal made writes durable
// and how many writes they made durable and acknowledged, since the start:
// writes per fsync is how well concurrent writes share them.
func (s *State) JournalStats() (syncs, writes uint64) {
	return s.jf.syncs.Load(), s.acked.Load()
}

// StoreBytes is what the datastore holds on disk (Badger's LSM tree and
// value log; -1 for another datastore): the live pinset and its whole
// history (docs/adr/0009-compaction.md).
func (s *State) StoreBytes() int64 {
	db, err := badgerOf(s.deps.Store)
	if err != nil {
		return -1
	}
	lsm, vlog := db.Size()
	return lsm + vlog
}

func (s *State) Height(ctx context.Context) uint64 {
	return s.crdt.InternalStats(ctx).MaxHeight
}
