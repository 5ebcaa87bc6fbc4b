// Package pintracker makes kubo hold what the pinset allocates to this peer.
// It keeps a per-CID operation (pin or unpin) with a status, runs the
// operations from a queue with bounded concurrency, retries failures with
// backoff, and periodically compares the pinset with kubo's pins so that
// anything kubo lost is pinned again. It never writes the pinset.
package pintracker

import (
	"context"
	"fmt"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

var logger = logging.Logger("pintracker")

// IPFS is what the tracker needs from kubo. Calls block until kubo answers
// and are safe for concurrent use.
type IPFS interface {
	Pin(ctx context.Context, c api.Cid, mode api.PinMode, progress func(blocks uint64)) error
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
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type entry struct {
	pin      *api.Pin // nil when the CID left the pinset
	want     bool     // kubo should hold it
	inPinset bool
	status   api.TrackerStatus
	err      string
	ts       time.Time
	attempts int
	queued   bool // in the queue or running
	running  bool
	cancel   context.CancelFunc
	retry    *time.Timer
}

// Tracker reconciles the pinset with kubo.
type Tracker struct {
	cfg  Config
	deps Deps

	mu      sync.Mutex
	entries map[string]*entry
	queue   []string
	wake    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes a tracker; Start runs it.
func New(cfg Config, deps Deps) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.IPFS == nil || deps.Pinset == nil {
		return nil, fmt.Errorf("pintracker: IPFS and Pinset are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Tracker{cfg: cfg, deps: deps, entries: map[string]*entry{}, wake: make(chan struct{}, 1)}, nil
}

// Start loads the pinset, runs a first reconcile against kubo and starts
// the workers and the periodic recover pass. It stops when ctx ends or at
// Close.
func (t *Tracker) Start(ctx context.Context) error {
	t.ctx, t.cancel = context.WithCancel(ctx)
	if err := t.RecoverAll(t.ctx); err != nil {
		logger.Warnf("first reconcile with kubo: %s (will retry)", err)
	}
	t.wg.Add(t.cfg.Concurrency + 1)
	for range t.cfg.Concurrency {
		go func() {
			defer t.wg.Done()
			t.worker()
		}()
	}
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(t.cfg.RecoverInterval.D())
		defer tick.Stop()
		for {
			select {
			case <-t.ctx.Done():
				return
			case <-tick.C:
				if err := t.RecoverAll(t.ctx); err != nil && t.ctx.Err() == nil {
					logger.Warnf("recover pass: %s", err)
				}
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
	t.wg.Wait()
	t.mu.Lock()
	for _, e := range t.entries {
		if e.retry != nil {
			e.retry.Stop()
		}
	}
	t.mu.Unlock()
	return nil
}

func (t *Tracker) wants(p *api.Pin) bool {
	return !p.IsRemote(t.deps.Self)
}

// Track records a pin of the pinset (new or changed). It never blocks on
// kubo.
func (t *Tracker) Track(p *api.Pin) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := p.Cid.Key()
	e := t.upsert(key, p)
	want := t.wants(p)
	if want == e.want && e.status != "" && e.status != api.StatusRemote && e.status != api.StatusUnpinned && !e.status.IsError() {
		return // nothing to do beyond the record update
	}
	wasWanted := e.want
	e.want = want
	if want || wasWanted || e.running {
		t.requeue(key, e) // pin here, or unpin what this peer held
		return
	}
	e.attempts = 0
	t.set(e, api.StatusRemote, "")
}

// upsert stores a copy of p as the entry's record (creating the entry);
// t.mu must be held.
func (t *Tracker) upsert(key string, p *api.Pin) *entry {
	e := t.entries[key]
	if e == nil {
		e = &entry{}
		t.entries[key] = e
	}
	cp := *p
	e.pin = &cp
	e.inPinset = true
	return e
}

// Untrack records that a CID left the pinset: kubo should unpin it.
func (t *Tracker) Untrack(c api.Cid) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := c.Key()
	e := t.entries[key]
	if e == nil {
		e = &entry{pin: &api.Pin{Cid: c}}
		t.entries[key] = e
	} else if e.pin != nil {
		cp := *e.pin
		e.pin = &cp
	}
	pinWasRemote := !e.want && e.status == api.StatusRemote
	e.want = false
	e.inPinset = false
	if pinWasRemote {
		delete(t.entries, key)
		return
	}
	if e.cancel != nil {
		e.cancel() // stop a pin in flight
	}
	t.requeue(key, e)
}

func (t *Tracker) set(e *entry, st api.TrackerStatus, errText string) {
	e.status = st
	e.err = errText
	e.ts = t.deps.Now().UTC()
}

// requeue starts e's operation afresh: attempts reset, queued status for
// what e wants now. t.mu must be held.
func (t *Tracker) requeue(key string, e *entry) {
	e.attempts = 0
	if e.want {
		t.set(e, api.StatusPinQueued, "")
	} else {
		t.set(e, api.StatusUnpinQueued, "")
	}
	t.enqueue(key, e)
}

// enqueue must be called with t.mu held.
func (t *Tracker) enqueue(key string, e *entry) {
	if e.retry != nil {
		e.retry.Stop()
		e.retry = nil
	}
	if e.queued {
		return
	}
	e.queued = true
	t.queue = append(t.queue, key)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *Tracker) next() (string, *entry, bool) {
	for {
		t.mu.Lock()
		if len(t.queue) > 0 {
			key := t.queue[0]
			t.queue = t.queue[1:]
			if len(t.queue) > 0 {
				select { // pass the wake-up on to another worker
				case t.wake <- struct{}{}:
				default:
				}
			}
			e := t.entries[key]
			if e == nil {
				t.mu.Unlock()
				continue
			}
			e.running = true
			t.mu.Unlock()
			return key, e, true
		}
		t.mu.Unlock()
		select {
		case <-t.wake:
		case <-t.ctx.Done():
			return "", nil, false
		}
	}
}

func (t *Tracker) worker() {
	for {
		key, e, ok := t.next()
		if !ok {
			return
		}
		t.run(key, e)
	}
}

func (t *Tracker) run(key string, e *entry) {
	t.mu.Lock()
	want := e.want
	pin := *e.pin
	ctx, cancel := context.WithCancel(t.ctx)
	e.cancel = cancel
	if want {
		t.set(e, api.StatusPinning, "")
	} else {
		t.set(e, api.StatusUnpinning, "")
	}
	e.attempts++
	t.mu.Unlock()

	var err error
	if want {
		err = t.pin(ctx, &pin)
	} else {
		err = t.unpin(ctx, pin.Cid)
	}
	cancel()

	t.mu.Lock()
	defer t.mu.Unlock()
	e.cancel = nil
	e.running = false
	e.queued = false
	if t.ctx.Err() != nil {
		return
	}
	if e.want != want { // changed while running: do the new thing
		t.requeue(key, e)
		return
	}
	if err == nil {
		e.attempts = 0
		switch {
		case want:
			t.set(e, api.StatusPinned, "")
		case e.inPinset:
			t.set(e, api.StatusRemote, "") // still in the pinset, elsewhere
		default:
			delete(t.entries, key)
		}
		return
	}
	st := api.StatusPinError
	if !want {
		st = api.StatusUnpinError
	}
	t.set(e, st, err.Error())
	logger.Warnf("%s %s (attempt %d): %s", st, key, e.attempts, err)
	if e.attempts < t.cfg.MaxAttempts {
		delay := t.backoff(e.attempts)
		e.retry = time.AfterFunc(delay, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.entries[key] == e && e.status == st {
				t.enqueue(key, e)
			}
		})
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
	st, err := t.deps.IPFS.PinLsCid(ctx, c)
	if err != nil {
		return err
	}
	if st != api.IPFSPinRecursive && st != api.IPFSPinDirect {
		return nil // kubo does not hold it (or only indirectly)
	}
	return t.deps.IPFS.Unpin(ctx, c)
}

// RecoverAll compares the pinset with kubo: pins kubo lost are marked
// unexpectedly_unpinned and pinned again; pins kubo holds are marked
// pinned; errors are retried.
func (t *Tracker) RecoverAll(ctx context.Context) error {
	held := make(map[string]api.IPFSPinStatus)
	for _, typ := range []string{"recursive", "direct"} {
		out := make(chan api.IPFSPinInfo, 1024)
		errc := make(chan error, 1)
		go func() { errc <- t.deps.IPFS.PinLs(ctx, typ, out) }()
		for p := range out {
			held[p.Cid.Key()] = p.Type
		}
		if err := <-errc; err != nil {
			return err
		}
	}
	pins := make(chan api.Pin, 1024)
	errc := make(chan error, 1)
	go func() { errc <- t.deps.Pinset(ctx, pins) }()
	seen := make(map[string]bool)
	for p := range pins {
		key := p.Cid.Key()
		seen[key] = true
		t.reconcile(key, &p, held[key])
	}
	if err := <-errc; err != nil {
		return err
	}
	// Entries whose CID left the pinset while we were not told (or whose
	// unpin failed): unpin again.
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, e := range t.entries {
		if !seen[key] && !e.queued && e.status == api.StatusUnpinError {
			e.attempts = 0
			t.enqueue(key, e)
		}
	}
	return nil
}

func (t *Tracker) reconcile(key string, p *api.Pin, held api.IPFSPinStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.upsert(key, p)
	e.want = t.wants(p)
	if e.queued || e.running {
		return
	}
	has := held.IsPinned(p.Mode)
	switch {
	case e.want && has:
		if e.status != api.StatusPinned {
			t.set(e, api.StatusPinned, "")
		}
	case e.want && e.status == api.StatusPinned:
		t.set(e, api.StatusUnexpectedlyUnpinned, "kubo no longer holds the pin")
		logger.Warnf("%s was unpinned in kubo behind the cluster's back: pinning again", key)
		e.attempts = 0
		t.enqueue(key, e)
	case e.want:
		if e.status == "" {
			t.set(e, api.StatusPinQueued, "")
		}
		e.attempts = 0
		t.enqueue(key, e)
	case !e.want && has && e.status != api.StatusRemote:
		t.set(e, api.StatusUnpinQueued, "")
		t.enqueue(key, e)
	default:
		if e.status != api.StatusRemote {
			t.set(e, api.StatusRemote, "")
		}
	}
}

// Recover retries the operation of one CID now.
func (t *Tracker) Recover(c api.Cid) api.PinInfo {
	t.mu.Lock()
	key := c.Key()
	if e := t.entries[key]; e != nil && (e.status.IsError() || e.status == api.StatusUnexpectedlyUnpinned) {
		t.requeue(key, e)
	}
	t.mu.Unlock()
	return t.Status(c)
}

// Status returns this peer's status of c.
func (t *Tracker) Status(c api.Cid) api.PinInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[c.Key()]
	if e == nil {
		return api.PinInfo{Cid: c, Peer: t.deps.Self, PinInfoShort: api.PinInfoShort{
			Status: api.StatusUnpinned, TS: t.deps.Now().UTC()}}
	}
	return t.info(e)
}

func (t *Tracker) info(e *entry) api.PinInfo {
	pi := api.PinInfo{Peer: t.deps.Self, PinInfoShort: api.PinInfoShort{
		Status: e.status, TS: e.ts, Error: e.err, AttemptCount: e.attempts}}
	if p := e.pin; p != nil {
		pi.Cid, pi.Name, pi.Allocations, pi.Origins = p.Cid, p.Name, p.Allocations, p.Origins
		pi.Created, pi.Metadata = p.Timestamp, p.Metadata
	}
	return pi
}

// StatusAll returns the status of every tracked CID that passes filter.
func (t *Tracker) StatusAll(filter api.StatusFilter) []api.PinInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]api.PinInfo, 0, len(t.entries))
	for _, e := range t.entries {
		if filter.Match(e.status) {
			out = append(out, t.info(e))
		}
	}
	return out
}

// RecoverErrored re-queues every errored operation now.
func (t *Tracker) RecoverErrored() []api.PinInfo {
	t.mu.Lock()
	var keys []string
	for key, e := range t.entries {
		if e.status.IsError() {
			keys = append(keys, key)
		}
	}
	t.mu.Unlock()
	out := make([]api.PinInfo, 0, len(keys))
	for _, key := range keys {
		t.mu.Lock()
		e := t.entries[key]
		t.mu.Unlock()
		if e != nil && e.pin != nil {
			out = append(out, t.Recover(e.pin.Cid))
		}
	}
	return out
}
