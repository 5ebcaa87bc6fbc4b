// Package pintracker makes kubo hold what the pinset allocates to this peer.
//
// It keeps state only for CIDs with work outstanding: an operation (pin or
// unpin) that is queued, running or failed. Everything else is derived —
// a pin of the pinset allocated here with no operation outstanding is
// pinned, one allocated elsewhere is remote — so a peer holding a million
// pins keeps no per-pin memory in the tracker. Operations run from a queue
// with bounded concurrency and retry with backoff; a periodic recover pass
// compares the pinset with kubo's pins, pins what kubo lost, and unpins
// pins of the pinset that are no longer allocated here. It never writes
// the pinset.
package pintracker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/ipfsclient"
)

var logger = logging.Logger("pintracker")

// IPFS is what the tracker needs from kubo. Calls block until kubo answers
// and are safe for concurrent use.
type IPFS interface {
	Pin(ctx context.Context, c api.Cid, mode api.PinMode, progress func(blocks uint64)) error
	// PinMany pins several CIDs in one call; it fails as a whole.
	PinMany(ctx context.Context, cids []api.Cid, mode api.PinMode, progress func(blocks uint64)) error
	Unpin(ctx context.Context, c api.Cid) error
	PinLs(ctx context.Context, typeFilter string, out chan<- api.IPFSPinInfo) error
	PinLsCid(ctx context.Context, c api.Cid) (api.IPFSPinStatus, error)
	// PinUpdate pins to by reusing what kubo fetched for from (which stays
	// pinned).
	PinUpdate(ctx context.Context, from, to api.Cid) error
}

// Deps are the tracker's collaborators.
type Deps struct {
	IPFS IPFS
	// Self is this peer: pins allocated to it are pinned here.
	Self peer.ID
	// Pinset streams the desired pinset into out and closes it.
	Pinset func(ctx context.Context, out chan<- api.Pin) error
	// Get returns the pinset's record of c, or nil when c is not in it.
	Get func(ctx context.Context, c api.Cid) (*api.Pin, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Pinned, when set, is told how long each successful pin took, from
	// the operation's creation to kubo's answer. It must not block.
	Pinned func(time.Duration)
}

// op is the outstanding work for one CID.
type op struct {
	cid api.Cid
	// pin is the record Track was given, used when the operation runs: the
	// CRDT calls its hooks before its write is committed, so reading the
	// pinset back at once could miss it. nil: read the pinset.
	pin      *api.Pin
	want     bool // pin (true) or unpin
	status   api.TrackerStatus
	err      string
	ts       time.Time
	attempts int
	queued   bool // in the queue or running
	running  bool
	cancel   context.CancelFunc
	retry    *time.Timer
	born     time.Time
}

// Tracker reconciles the pinset with kubo.
type Tracker struct {
	cfg  Config
	deps Deps

	mu    sync.Mutex
	ops   map[string]*op
	queue []string
	wake  chan struct{}
	// gathering is set while a worker waits pin_batch_wait for a short
	// queue of pins to grow into one kubo call; the other workers leave
	// a short queue to it.
	gathering bool
	// pending is work waiting for room in ops (max_queue): what Track
	// could not queue and what recover passes found, as bare CIDs. The
	// feeder moves it into ops as operations finish.
	pending   workList
	feedWake  chan struct{}
	room      *sync.Cond // signalled when an operation finishes
	firstPass bool       // a recover pass has completed since start
	pinned    int        // pins held here, as of the last recover pass
	total     int        // pins in the pinset, as of the last recover pass
	// settled holds, while recover passes run, the CIDs whose operation
	// succeeded since the oldest of them began listing kubo's pins, and
	// whether it pinned (true) or unpinned: the listing may predate
	// them, and without this a pass takes a pin made meanwhile for one
	// kubo lost (and pins it again), or queues an unpin again.
	passes  int
	settled map[string]bool
	// held remembers what kubo holds between recover passes, so that a
	// re-allocation keeping its replica here costs no kubo call.
	held heldIndex
	// absorbed is the latest Timestamp (Unix nanoseconds) of a pin
	// allocated here that Track took in: the writers' allocations stamped
	// up to it are in this peer's figures (queued, or pinned), so they need
	// no reservation on its room any more (capacity.Ledger).
	absorbed int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes a tracker; Start runs it.
func New(cfg Config, deps Deps) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.IPFS == nil || deps.Pinset == nil || deps.Get == nil {
		return nil, fmt.Errorf("pintracker: IPFS, Pinset and Get are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	t := &Tracker{cfg: cfg, deps: deps, ops: map[string]*op{},
		wake: make(chan struct{}, 1), feedWake: make(chan struct{}, 1)}
	t.room = sync.NewCond(&t.mu)
	return t, nil
}

// Start starts the workers, the feeder and the recover pass, which runs
// at once (to reconcile with kubo after a restart) and then every
// recover_interval. It stops when ctx ends or at Close.
func (t *Tracker) Start(ctx context.Context) error {
	t.ctx, t.cancel = context.WithCancel(ctx)
	t.wg.Add(t.cfg.Concurrency + 2)
	for range t.cfg.Concurrency {
		go func() {
			defer t.wg.Done()
			t.worker()
		}()
	}
	go func() {
		defer t.wg.Done()
		t.feeder()
	}()
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(t.cfg.RecoverInterval.D())
		defer tick.Stop()
		for {
			if err := t.RecoverAll(t.ctx); err != nil && t.ctx.Err() == nil {
				logger.Warnf("recover pass: %s", err)
			}
			select {
			case <-t.ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return nil
}

// Close stops the workers and waits for them.
func (t *Tracker) Close() error {
	if t.cancel != nil {
		t.cancel()
	}
	t.mu.Lock()
	t.room.Broadcast() // the feeder waiting for room
	t.mu.Unlock()
	t.wg.Wait()
	t.mu.Lock()
	for _, o := range t.ops {
		if o.retry != nil {
			o.retry.Stop()
		}
	}
	t.mu.Unlock()
	return nil
}

func (t *Tracker) wants(p *api.Pin) bool {
	return p.Type != api.MetaType && !p.IsRemote(t.deps.Self)
}

// Track records a pin of the pinset (new or changed). It never blocks on
// kubo. A pin allocated elsewhere needs nothing now: if kubo still holds
// it from an earlier allocation, the recover pass unpins it.
func (t *Tracker) Track(p *api.Pin) {
	if p.Type == api.MetaType {
		return // describes content held by other pins (erasure-coded shards)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := p.Cid.Key()
	want := t.wants(p)
	if ts := p.Timestamp.UnixNano(); want && ts > t.absorbed {
		t.absorbed = ts
	}
	o := t.ops[key]
	if o == nil {
		switch {
		case want && p.Version > 1 && p.Mode == api.PinModeRecursive && !p.PinUpdate.Defined() && t.held.has(key):
			// A change of a pin kubo holds here already (e.g. a
			// re-allocation that keeps this replica): nothing to do.
		case want:
			if o = t.start(key, p.Cid, true); o != nil {
				o.pin = copyPin(p)
			}
		case p.Version > 1:
			// An update of a pin allocated elsewhere: it may have been
			// allocated here before (repair, rebalancing), so unpin it if
			// kubo holds it, now rather than at the next recover pass.
			// New pins (version 1) were never here: no kubo call.
			t.start(key, p.Cid, false)
		}
		return
	}
	o.pin = copyPin(p)
	if o.want != want && o.cancel != nil {
		o.cancel() // stop the opposite operation in flight
	}
	o.want = want
	t.requeue(key, o)
}

func copyPin(p *api.Pin) *api.Pin {
	cp := *p
	return &cp
}

// Untrack records that a CID left the pinset: kubo should unpin it.
func (t *Tracker) Untrack(c api.Cid) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := c.Key()
	o := t.ops[key]
	if o == nil {
		// Not capped by max_queue: the recover pass only walks the
		// pinset, so it would never find this unpin again.
		o = &op{cid: c, born: t.deps.Now()}
		t.ops[key] = o
		t.requeue(key, o)
		return
	}
	if o.want && o.cancel != nil {
		o.cancel() // stop a pin in flight
	}
	o.want, o.pin = false, nil
	t.requeue(key, o)
}

// start queues a new operation unless max_queue are outstanding, in which
// case the work waits in pending. t.mu must be held.
func (t *Tracker) start(key string, c api.Cid, want bool) *op {
	if len(t.ops) >= t.cfg.MaxQueue {
		kind := workPin
		if !want {
			kind = workUnpin
		}
		t.pending.add(c, kind)
		t.wakeFeeder()
		return nil
	}
	o := &op{cid: c, want: want, born: t.deps.Now()}
	t.ops[key] = o
	t.requeue(key, o)
	return o
}

func (t *Tracker) set(o *op, st api.TrackerStatus, errText string) {
	o.status = st
	o.err = errText
	o.ts = t.deps.Now().UTC()
}

// requeue starts o afresh: attempts reset, queued status for what o wants
// now. t.mu must be held.
func (t *Tracker) requeue(key string, o *op) {
	o.attempts = 0
	if o.want {
		t.set(o, api.StatusPinQueued, "")
	} else {
		t.set(o, api.StatusUnpinQueued, "")
	}
	t.enqueue(key, o)
}

// enqueue must be called with t.mu held.
func (t *Tracker) enqueue(key string, o *op) {
	if o.retry != nil {
		o.retry.Stop()
		o.retry = nil
	}
	if o.queued {
		return
	}
	o.queued = true
	t.queue = append(t.queue, key)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// next takes work from the queue: one unpin, or up to tracker.pin_batch
// pins in a row.
func (t *Tracker) next() ([]string, []*op, bool) {
	gathered := false
	for {
		t.mu.Lock()
		if !gathered && t.shortPinQueue() {
			if t.gathering { // another worker is gathering this group
				t.mu.Unlock()
				select {
				case <-t.wake:
					continue
				case <-t.ctx.Done():
					return nil, nil, false
				}
			}
			// Pins arrive one by one as writes are acknowledged or
			// deltas merged: wait a moment so that kubo gets them in a
			// few calls rather than one call each.
			t.gathering, gathered = true, true
			t.mu.Unlock()
			select {
			case <-time.After(t.cfg.PinBatchWait.D()):
			case <-t.ctx.Done():
				return nil, nil, false
			}
			continue
		}
		if gathered {
			t.gathering = false
		}
		var keys []string
		var ops []*op
		for len(t.queue) > 0 && len(ops) < t.cfg.PinBatch {
			key := t.queue[0]
			o := t.ops[key]
			if o == nil {
				t.queue = t.queue[1:]
				continue
			}
			if len(ops) > 0 && (!o.want || !ops[0].want) {
				break // unpins go one at a time
			}
			t.queue = t.queue[1:]
			o.running = true
			keys, ops = append(keys, key), append(ops, o)
		}
		if len(t.queue) > 0 {
			select { // pass the wake-up on to another worker
			case t.wake <- struct{}{}:
			default:
			}
		}
		t.mu.Unlock()
		if len(ops) > 0 {
			return keys, ops, true
		}
		gathered = false
		select {
		case <-t.wake:
		case <-t.ctx.Done():
			return nil, nil, false
		}
	}
}

// shortPinQueue tells whether the queue starts with a pin and holds fewer
// than a group's worth, with pin_batch_wait set. t.mu must be held.
func (t *Tracker) shortPinQueue() bool {
	if t.cfg.PinBatchWait <= 0 || len(t.queue) >= t.cfg.PinBatch {
		return false
	}
	for _, key := range t.queue {
		if o := t.ops[key]; o != nil {
			return o.want
		}
	}
	return false
}

func (t *Tracker) worker() {
	for {
		keys, ops, ok := t.next()
		if !ok {
			return
		}
		t.run(keys, ops)
	}
}

// run carries out a group of operations (all pins, or one unpin). Pins
// that need nothing special go to kubo in one call; if that call fails,
// each is tried alone so that one bad CID does not fail the others.
func (t *Tracker) run(keys []string, ops []*op) {
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	t.mu.Lock()
	want := ops[0].want
	cids := make([]api.Cid, len(ops))
	known := make([]*api.Pin, len(ops))
	for i, o := range ops {
		cids[i], known[i] = o.cid, o.pin
		o.cancel = cancel
		if want {
			t.set(o, api.StatusPinning, "")
		} else {
			t.set(o, api.StatusUnpinning, "")
		}
		o.attempts++
	}
	t.mu.Unlock()

	errs := make([]error, len(ops))
	pins := make([]*api.Pin, len(ops))
	if !want {
		errs[0] = t.unpin(ctx, cids[0])
	} else {
		var plain []int // by index: recursive pins with no pin-update
		for i, c := range cids {
			if pins[i] = known[i]; pins[i] == nil {
				pins[i], errs[i] = t.deps.Get(ctx, c)
			}
			// A pin gone from the pinset needs nothing: Untrack turns
			// it into an unpin.
			if errs[i] == nil && pins[i] != nil && !t.wants(pins[i]) {
				pins[i] = nil // allocated elsewhere since it was queued
			}
			if errs[i] == nil && pins[i] != nil && pins[i].Mode == api.PinModeRecursive && !pins[i].PinUpdate.Defined() {
				plain = append(plain, i)
			}
		}
		alone := t.pinGroup(ctx, cids, plain)
		for i, p := range pins {
			if errs[i] != nil || p == nil || (slices.Contains(plain, i) && !slices.Contains(alone, i)) {
				continue
			}
			// Alone, with its own context: cancelling it (the CID left
			// the pinset meanwhile) stops only this pin.
			octx, ocancel := context.WithCancel(t.ctx)
			t.mu.Lock()
			changed := ops[i].want != want
			ops[i].cancel = ocancel
			t.mu.Unlock()
			if !changed {
				errs[i] = t.pin(octx, p)
			}
			ocancel()
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		for _, o := range ops {
			o.cancel, o.running, o.queued = nil, false, false
		}
		return
	}
	now := t.deps.Now()
	for i, o := range ops {
		switch {
		case errs[i] != nil:
		case !want:
			t.held.unpin(keys[i], now)
		case pins[i] != nil && pins[i].Mode == api.PinModeRecursive:
			t.held.pin(keys[i], now)
		}
		t.finish(keys[i], o, want, errs[i])
	}
}

// pinGroup pins cids[i] for every i in idx in one kubo call. If kubo
// refuses the group, it halves it and tries each half, so that a CID kubo
// cannot pin is isolated in a few calls while the rest get pinned. It
// returns the indexes left to pin one by one: a lone CID, or the whole
// group when the call timed out or was cancelled (halving would wait for
// the timeout again at every level).
func (t *Tracker) pinGroup(ctx context.Context, cids []api.Cid, idx []int) (alone []int) {
	if len(idx) <= 1 {
		return idx
	}
	batch := make([]api.Cid, len(idx))
	for j, i := range idx {
		batch[j] = cids[i]
	}
	err := t.deps.IPFS.PinMany(ctx, batch, api.PinModeRecursive, nil)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil || errors.Is(err, ipfsclient.ErrPinTimeout):
		return idx
	}
	h := len(idx) / 2
	return append(t.pinGroup(ctx, cids, idx[:h]), t.pinGroup(ctx, cids, idx[h:])...)
}

// finish records the outcome of o's operation. t.mu must be held.
func (t *Tracker) finish(key string, o *op, want bool, err error) {
	o.cancel = nil
	o.running = false
	o.queued = false
	if o.want != want { // changed while running: do the new thing
		t.requeue(key, o)
		return
	}
	if err == nil {
		if want && t.deps.Pinned != nil {
			t.deps.Pinned(t.deps.Now().Sub(o.born))
		}
		if t.settled != nil {
			t.settled[key] = want
		}
		t.done(key)
		return
	}
	st := api.StatusPinError
	if !want {
		st = api.StatusUnpinError
	}
	t.set(o, st, err.Error())
	logger.Warnf("%s %s (attempt %d): %s", st, key, o.attempts, err)
	if o.attempts < t.cfg.MaxAttempts {
		delay := t.backoff(o.attempts)
		o.retry = time.AfterFunc(delay, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.ops[key] == o && o.status == st {
				t.enqueue(key, o)
			}
		})
	}
}

// done forgets a finished operation, making room for pending work. t.mu
// must be held.
func (t *Tracker) done(key string) {
	delete(t.ops, key)
	t.room.Signal()
}

// Counts returns how many pins this peer held at the last recover pass,
// and how many operations are queued, running, failed or pending now.
func (t *Tracker) Counts() (pinned, queued int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pinned, len(t.ops) + t.pending.n
}

// Absorbed is the latest Timestamp of a pin allocated here that Track
// took in (Unix nanoseconds; 0: none since start). Read it before Counts:
// what it covers is then counted.
func (t *Tracker) Absorbed() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.absorbed
}

// Total is the size of the pinset at the last recover pass.
func (t *Tracker) Total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// StatusCounts counts this peer's pins by status: pinned as of the last
// recover pass, the outstanding operations by their status, and work not
// yet queued as pin_queued.
func (t *Tracker) StatusCounts() map[api.TrackerStatus]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[api.TrackerStatus]int{api.StatusPinned: t.pinned}
	for _, o := range t.ops {
		out[o.status]++
	}
	out[api.StatusPinQueued] += t.pending.n
	return out
}

// backlog reports whether some work may not be in ops yet, so that a pin
// with no operation is not necessarily pinned. t.mu must be held.
func (t *Tracker) backlog() bool {
	return !t.firstPass || t.pending.len() > 0
}

func (t *Tracker) wakeFeeder() {
	select {
	case t.feedWake <- struct{}{}:
	default:
	}
}

// feeder moves pending work into ops, waiting while max_queue operations
// are outstanding.
func (t *Tracker) feeder() {
	for {
		t.mu.Lock()
		for t.pending.len() > 0 && t.ctx.Err() == nil {
			for len(t.ops) >= t.cfg.MaxQueue && t.ctx.Err() == nil {
				t.room.Wait()
			}
			c, kind, ok := t.pending.pop()
			if !ok {
				continue // an undecodable entry
			}
			if key := c.Key(); t.ops[key] == nil { // else: already on its way
				o := t.start(key, c, kind != workUnpin)
				if o != nil && kind == workLost {
					t.set(o, api.StatusUnexpectedlyUnpinned, "kubo no longer holds the pin")
				}
			}
		}
		t.mu.Unlock()
		select {
		case <-t.feedWake:
		case <-t.ctx.Done():
			return
		}
	}
}

func (t *Tracker) backoff(attempt int) time.Duration {
	d := t.cfg.RetryBackoff.D()
	for i := 1; i < attempt && d < t.cfg.RetryBackoffMax.D(); i++ {
		d *= 2
	}
	return min(d, t.cfg.RetryBackoffMax.D())
}

// pin pins in kubo. A pin that updates another one, which kubo holds
// recursively, goes through kubo's pin/update so only the difference is
// fetched; if that fails, a plain pin follows.
func (t *Tracker) pin(ctx context.Context, p *api.Pin) error {
	if p.PinUpdate.Defined() && p.Mode == api.PinModeRecursive {
		if st, err := t.deps.IPFS.PinLsCid(ctx, p.PinUpdate); err == nil && st == api.IPFSPinRecursive {
			if err := t.deps.IPFS.PinUpdate(ctx, p.PinUpdate, p.Cid); err == nil {
				return nil
			} else if ctx.Err() == nil {
				logger.Infof("pin update %s -> %s: %s; pinning %s directly", p.PinUpdate, p.Cid, err, p.Cid)
			}
		}
	}
	return t.deps.IPFS.Pin(ctx, p.Cid, p.Mode, nil)
}

func (t *Tracker) unpin(ctx context.Context, c api.Cid) error {
	// The pinset keys CIDs as v1: kubo may hold the pin under the v0 form
	// it was added with, and pins by the exact CID.
	for _, form := range c.Forms() {
		st, err := t.deps.IPFS.PinLsCid(ctx, form)
		if err != nil {
			return err
		}
		if st != api.IPFSPinRecursive && st != api.IPFSPinDirect {
			continue // not held in this form (or only indirectly)
		}
		if err := t.deps.IPFS.Unpin(ctx, form); err != nil {
			return err
		}
		logger.Infof("unpinned %s from kubo", form)
		return nil
	}
	logger.Debugf("unpin %s: kubo does not hold it", c)
	return nil
}

// heldSet is kubo's pins, keyed by a 128-bit hash of the CID key: 24 bytes
// an entry instead of a string map's ~100, so a pass over a million pins
// stays small.
type heldSet map[[16]byte]api.IPFSPinStatus

func heldKey(key string) [16]byte {
	h := fnv.New128a()
	h.Write([]byte(key))
	var k [16]byte
	h.Sum(k[:0])
	return k
}

// kuboPins lists kubo's pins, and the heldIndex hashes of the recursive
// ones.
func (t *Tracker) kuboPins(ctx context.Context) (heldSet, []uint64, error) {
	held := heldSet{}
	var recursive []uint64
	for _, typ := range []string{"recursive", "direct"} {
		out := make(chan api.IPFSPinInfo, 1024)
		errc := make(chan error, 1)
		go func() { errc <- t.deps.IPFS.PinLs(ctx, typ, out) }()
		for p := range out {
			k := heldKey(p.Cid.Key())
			held[k] = p.Type
			if p.Type == api.IPFSPinRecursive {
				recursive = append(recursive, shortKey(k))
			}
		}
		if err := <-errc; err != nil {
			return nil, nil, err
		}
	}
	return held, recursive, nil
}

// RecoverAll compares the pinset with kubo: pins kubo lost are marked
// unexpectedly_unpinned and pinned again, pins kubo holds but this peer is
// not allocated are unpinned, and errors are retried.
//
// New work found by the pass goes to pending as bare CIDs (~40 bytes a
// pin), which the feeder queues no faster than the workers drain it: a
// peer that takes on a million pins never holds a million operations.
func (t *Tracker) RecoverAll(ctx context.Context) error {
	t.mu.Lock()
	if t.passes == 0 {
		t.settled = map[string]bool{}
	}
	t.passes++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.passes--; t.passes == 0 {
			t.settled = nil
		}
		t.mu.Unlock()
	}()
	listed := t.deps.Now()
	held, recursive, err := t.kuboPins(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.held.install(recursive, listed)
	// While work is pending, pins kubo lacks are most likely in it
	// already: adding them again would only grow the list.
	skipPins := t.pending.len() > 0
	t.mu.Unlock()
	var todo workList
	pinned := 0
	pins := make(chan api.Pin, 1024)
	errc := make(chan error, 1)
	go func() { errc <- t.deps.Pinset(ctx, pins) }()
	total := 0
	for p := range pins {
		total++
		key := p.Cid.Key()
		h := held[heldKey(key)]
		if h.IsPinned(p.Mode) && t.wants(&p) {
			pinned++
		}
		t.reconcile(key, &p, h, &todo, skipPins, listed)
	}
	if err := <-errc; err != nil {
		return err
	}
	held = nil
	// Unpins that failed for CIDs still out of the pinset: try again.
	t.mu.Lock()
	var retry []*op
	for _, o := range t.ops {
		if !o.queued && o.status == api.StatusUnpinError {
			retry = append(retry, o)
		}
	}
	t.mu.Unlock()
	for _, o := range retry {
		if p, err := t.deps.Get(ctx, o.cid); err == nil && p == nil {
			t.mu.Lock()
			if key := o.cid.Key(); t.ops[key] == o && !o.queued {
				o.attempts = 0
				t.enqueue(key, o)
			}
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	t.pending.appendList(&todo)
	t.firstPass = true
	t.pinned, t.total = pinned, total
	t.mu.Unlock()
	t.wakeFeeder()
	return nil
}

// workList is a FIFO of work as bare CIDs in one byte slice, each entry
// [len][CID bytes][kind]: ~40 bytes a pin, where an operation costs ~250.
type workList struct {
	buf []byte
	off int // read position
	n   int // entries
}

const (
	workPin   byte = 1
	workUnpin byte = 2
	workLost  byte = 3 // pin that kubo lost
)

func (w *workList) add(c api.Cid, kind byte) {
	b := c.Bytes()
	w.buf = append(w.buf, byte(len(b)))
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, kind)
	w.n++
}

func (w *workList) appendList(o *workList) {
	w.buf = append(w.buf, o.buf[o.off:]...)
	w.n += o.n
}

func (w *workList) len() int { return len(w.buf) - w.off }

// pop takes the oldest entry; ok is false for an undecodable one.
func (w *workList) pop() (c api.Cid, kind byte, ok bool) {
	n := int(w.buf[w.off])
	raw := w.buf[w.off+1 : w.off+1+n]
	kind = w.buf[w.off+1+n]
	w.off += n + 2
	w.n--
	cc, err := cid.Cast(slices.Clone(raw))
	switch {
	case w.off == len(w.buf): // drained: start over, keep the capacity
		w.buf, w.off = w.buf[:0], 0
	case w.off > 1<<20 && w.off > len(w.buf)/2: // drop the consumed half
		w.buf = append(w.buf[:0], w.buf[w.off:]...)
		w.off = 0
	}
	return api.NewCid(cc), kind, err == nil
}

// youngPin is how close to the pass's listing of kubo a pin's timestamp
// must be for a later pass to leave it to Track when kubo lacks it: far
// more than a write takes from journal to acknowledgement, short enough
// that a pin lost soon after it was written is pinned again a few passes
// later, and bounded on both sides (a peer's clock ahead does not hide its
// pins for longer).
const youngPin = 10 * time.Second

func (t *Tracker) reconcile(key string, p *api.Pin, held api.IPFSPinStatus, todo *workList, skipPins bool, listed time.Time) {
	if p.Type == api.MetaType {
		return // never pinned in kubo, never unpinned from it
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	want := t.wants(p)
	has := held.IsPinned(p.Mode)
	o := t.ops[key]
	if o != nil && o.queued {
		return // already on its way
	}
	if pinned, ok := t.settled[key]; ok && o == nil {
		has = pinned // done after kubo was listed
	}
	switch {
	case want && has:
		if o != nil {
			t.done(key) // an error that resolved itself
		}
	case want && o != nil:
		o.want, o.pin = true, copyPin(p)
		t.requeue(key, o) // retry the error now
	case want && skipPins:
	case want && !t.firstPass:
		todo.add(p.Cid, workPin) // perhaps never queued before the restart
	case want && listed.Sub(p.Timestamp).Abs() < youngPin:
		// Written just now: the pinset shows a write once it is
		// journaled, the tracker hears of it once it is acknowledged (or
		// merged), so it may not be queued yet. Not lost: if kubo really
		// lacks it later, the next pass finds it.
	case want:
		// No outstanding work means kubo held it before.
		logger.Warnf("%s is not pinned in kubo: pinning it", key)
		todo.add(p.Cid, workLost)
	case has: // allocated elsewhere, still held here
		if o == nil {
			todo.add(p.Cid, workUnpin)
		} else {
			o.want = false
			t.requeue(key, o)
		}
	}
}

// Recover retries the operation of one CID now.
func (t *Tracker) Recover(ctx context.Context, c api.Cid) api.PinInfo {
	if pi := t.Status(ctx, c); pi.Status == api.StatusUnexpectedlyUnpinned {
		t.mu.Lock()
		if key := c.Key(); t.ops[key] == nil {
			if o := t.start(key, c, true); o != nil {
				t.set(o, api.StatusUnexpectedlyUnpinned, "kubo no longer holds the pin")
			}
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	key := c.Key()
	if o := t.ops[key]; o != nil && (o.status.IsError() || o.status == api.StatusUnexpectedlyUnpinned) {
		t.requeue(key, o)
	}
	t.mu.Unlock()
	return t.Status(ctx, c)
}

// settled turns a derived "pinned" into what kubo says: not held means
// pin_queued while work is pending (it may be among it), else
// unexpectedly_unpinned.
func settled(pi *api.PinInfo, held api.IPFSPinStatus, mode api.PinMode, backlog bool) {
	if pi.Status != api.StatusPinned || held.IsPinned(mode) {
		return
	}
	if backlog {
		pi.Status = api.StatusPinQueued
	} else {
		pi.Status, pi.Error = api.StatusUnexpectedlyUnpinned, "kubo does not hold the pin"
	}
}

// Status returns this peer's status of c. A pin allocated here with no
// operation outstanding is checked with kubo.
func (t *Tracker) Status(ctx context.Context, c api.Cid) api.PinInfo {
	p, err := t.deps.Get(ctx, c)
	if err != nil {
		return api.PinInfo{Cid: c, Peer: t.deps.Self, PinInfoShort: api.PinInfoShort{
			Status: api.StatusClusterError, Error: err.Error(), TS: t.deps.Now().UTC()}}
	}
	t.mu.Lock()
	pi := t.info(c, p, t.ops[c.Key()])
	backlog := t.backlog()
	t.mu.Unlock()
	if pi.Status == api.StatusPinned { // derived: check with kubo
		if st, err := t.deps.IPFS.PinLsCid(ctx, c); err == nil {
			settled(&pi, st, p.Mode, backlog)
		}
	}
	return pi
}

// info is the status of c, whose pinset record is p (nil: not in the
// pinset) and outstanding operation o (nil: none). t.mu must be held.
func (t *Tracker) info(c api.Cid, p *api.Pin, o *op) api.PinInfo {
	pi := api.PinInfo{Cid: c, Peer: t.deps.Self}
	switch {
	case o != nil:
		pi.Status, pi.TS, pi.Error, pi.AttemptCount = o.status, o.ts, o.err, o.attempts
	case p == nil:
		pi.Status = api.StatusUnpinned
	case t.wants(p):
		pi.Status = api.StatusPinned
	default:
		pi.Status = api.StatusRemote
	}
	if p != nil {
		pi.Cid, pi.Name, pi.Allocations, pi.Origins = p.Cid, p.Name, p.Allocations, p.Origins
		pi.Created, pi.Metadata = p.Timestamp, p.Metadata
		pi.Type, pi.Reference = p.Type, p.Reference
		if pi.TS.IsZero() {
			pi.TS = p.Timestamp
		}
	}
	if pi.TS.IsZero() {
		pi.TS = t.deps.Now().UTC()
	}
	return pi
}

// StatusAll calls fn with the status of every pin of the pinset, and of
// every CID with an unpin outstanding, that passes filter. Like Status, it
// checks "pinned" against kubo's pin list.
func (t *Tracker) StatusAll(ctx context.Context, filter api.StatusFilter, fn func(api.PinInfo) error) error {
	listed := t.deps.Now()
	held, recursive, err := t.kuboPins(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.held.install(recursive, listed)
	backlog := t.backlog()
	t.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pins := make(chan api.Pin, 1024)
	errc := make(chan error, 1)
	go func() { errc <- t.deps.Pinset(ctx, pins) }()
	seen := map[string]bool{} // keys with an operation, reported already
	for p := range pins {
		key := p.Cid.Key()
		t.mu.Lock()
		o := t.ops[key]
		pi := t.info(p.Cid, &p, o)
		t.mu.Unlock()
		if o != nil {
			seen[key] = true
		} else {
			settled(&pi, held[heldKey(key)], p.Mode, backlog)
		}
		if filter.Match(pi.Status) {
			if err := fn(pi); err != nil {
				return err
			}
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	t.mu.Lock()
	var rest []api.PinInfo
	for key, o := range t.ops {
		if !seen[key] && !o.want && filter.Match(o.status) {
			rest = append(rest, t.info(o.cid, nil, o))
		}
	}
	t.mu.Unlock()
	for _, pi := range rest {
		if err := fn(pi); err != nil {
			return err
		}
	}
	return nil
}

// RecoverErrored re-queues every errored operation now.
func (t *Tracker) RecoverErrored(ctx context.Context) []api.PinInfo {
	t.mu.Lock()
	var cids []api.Cid
	for _, o := range t.ops {
		if o.status.IsError() {
			cids = append(cids, o.cid)
		}
	}
	t.mu.Unlock()
	out := make([]api.PinInfo, 0, len(cids))
	for _, c := range cids {
		out = append(out, t.Recover(ctx, c))
	}
	return out
}
