package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

var logger = logging.Logger("audit")

// Outcome is one challenge's outcome, as the auditor saw it.
type Outcome struct {
	Blocks int
	Bytes  int
	Took   time.Duration // from sending the challenge to the last block
	// Err says why the peer did not prove it holds the pin (nil: it did).
	Err error
}

// Deps is what an Auditor needs of the peer it runs in.
type Deps struct {
	Self peer.ID
	// Prove answers a challenge from this peer's own kubo; Ask sends one
	// to another peer (p2p.AskAudit).
	Prove func(context.Context, Challenge) ([][]byte, error)
	Ask   func(ctx context.Context, pid peer.ID, ch Challenge, deadline time.Duration) Outcome
	// Pins walks the pinset; InCharge says whether this peer audits the
	// CID of that key now (the rendezvous order of the live writers, as
	// repair uses it).
	Pins     func(ctx context.Context, fn func(api.Pin) error) error
	InCharge func(key string) bool
	// Suspend revokes pid ring-wide (an admission record) with note, once
	// it failed every audit of Config.FailRounds rounds in a row or lost
	// FailRounds replicas; Exempt peers (writers, and those revoked
	// already) are not. Suspend nil: nobody is.
	Suspend func(ctx context.Context, pid peer.ID, note string) error
	Exempt  func(peer.ID) bool
	// Unverified says which peers passed no audit yet: every round audits
	// one pin of each that holds one; Passed is told of every pass (it
	// lifts their cap). Either may be nil.
	Unverified func(peer.ID) bool
	Passed     func(ctx context.Context, pid peer.ID) error
	// Live are the peers whose heartbeats are current: rounds audit only
	// those, so a peer asleep or behind a rebooting router is the
	// repair's business (it is gone), never a failed audit. Nil: all are.
	Live func() []peer.ID
	// Lost is told when a replica's audits failed FailRounds times in a
	// row (the repair moves it: Auditor.Lost); nil: nobody.
	Lost func()
	// HeardSince says whether a heartbeat of pid arrived after t; Settle
	// is how long after a challenge one is due (monitor.interval). A
	// challenge not answered counts only against a peer heard since:
	// one asleep or cut off is the repair's business. Nil: all count.
	HeardSince func(pid peer.ID, t time.Time) bool
	Settle     time.Duration
	// Peername names a peer for logs and results (may be nil).
	Peername func(peer.ID) string
	// AskSlots bounds the challenges in flight to one peer at once (the
	// prover's slots for one writer, p2p.Audit.PerPeer): more wait their
	// turn, as a prover resets a stream beyond them. 0: no bound.
	AskSlots int
}

// Replica is what the audits of one pin at one peer found.
type Replica struct {
	LastVerified time.Time // last pass
	LastAudit    time.Time
	// Failing counts the failures since the last pass.
	Failing   int
	LastError string
	// Fetching: the last answer was "still fetching" (the holder does not
	// claim the pin yet). Within Config.FetchLimit of the pin's record it
	// is neither pass nor failure; past it, a failure of the replica
	// (which moves it) that does not count against the peer.
	Fetching bool
}

// Verdict is the replica's state in a word or a few: "verified",
// "failing (n): why" or "fetching: what the holder said".
func (r Replica) Verdict() string {
	switch {
	case r.Failing > 0:
		return fmt.Sprintf("failing (%d): %.120s", r.Failing, r.LastError)
	case r.Fetching:
		return fmt.Sprintf("fetching: %.120s", r.LastError)
	}
	return "verified"
}

type replicaKey struct {
	cid string
	pid peer.ID
}

// MaxReplicas bounds the replica records an auditor keeps (those audited
// longest ago go first): 24 bytes of key and ~80 of record each.
const MaxReplicas = 1 << 16

// maxNewcomers bounds the unverified peers a round audits beside its
// sample.
const maxNewcomers = 256

// maxConcurrent bounds the challenges of a round in flight at once.
const maxConcurrent = 4

// Auditor challenges the peers pins are allocated to, on demand and in
// rounds, and remembers what each peer and replica proved. A peer that
// fails Config.FailRounds rounds in a row is suspended. It is safe for
// concurrent use.
type Auditor struct {
	cfg  Config
	deps Deps
	// Peers are the records by peer.
	Peers *Verdicts

	asking perTarget

	mu       sync.Mutex
	replicas map[replicaKey]*Replica
	failed   map[peer.ID]int // rounds in a row in which every audit failed
	// mute: since when, and for how many rounds in a row, a peer heard
	// from answered none of this writer's challenges.
	mute  map[peer.ID]*muteSpell
	total struct{ passed, failed, suspended uint64 }
}

// NewAuditor makes an auditor; Run runs its rounds.
func NewAuditor(cfg Config, d Deps, maxPeers int) *Auditor {
	return &Auditor{cfg: cfg, deps: d, Peers: &Verdicts{Max: maxPeers},
		replicas: map[replicaKey]*Replica{}, failed: map[peer.ID]int{}, mute: map[peer.ID]*muteSpell{}}
}

type muteSpell struct {
	since  time.Time
	rounds int
}

// Counts are the audits passed and failed since start, and the peers
// suspended.
func (a *Auditor) Counts() (passed, failed, suspended uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total.passed, a.total.failed, a.total.suspended
}

// Failing are the peers whose last audit failed.
func (a *Auditor) Failing() []peer.ID { return a.Peers.Failing() }

// Replica is what the audits of c at pid found.
func (a *Auditor) Replica(c api.Cid, pid peer.ID) (Replica, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.replicas[replicaKey{c.Key(), pid}]
	if !ok {
		return Replica{}, false
	}
	return *r, true
}

func (a *Auditor) name(pid peer.ID) string {
	if a.deps.Peername == nil {
		return ""
	}
	return a.deps.Peername(pid)
}

// One challenges t (this peer: proves locally) to prove it holds pin,
// and records the verdict. No answer is recorded: only rounds,
// which see every answer of t, judge silence.
func (a *Auditor) One(ctx context.Context, pin api.Pin, t peer.ID) api.AuditResult {
	r, _, _ := a.ask(ctx, pin, t)
	return r
}

// Check challenges, in parallel, each peer pin is allocated to (others
// and this peer, for a pin on every peer) — or just the peer only, when it
// is set (cluster-ctl audit) — as One does.
func (a *Auditor) Check(ctx context.Context, pin api.Pin, others []peer.ID, only peer.ID) ([]api.AuditResult, error) {
	targets := pin.Allocations
	if len(targets) == 0 {
		targets = append([]peer.ID{a.deps.Self}, others...)
	}
	if only != "" {
		if !slices.Contains(targets, only) {
			return nil, fmt.Errorf("%w: %s is not allocated to %s", api.ErrBadRequest, pin.Cid, only)
		}
		targets = []peer.ID{only}
	}
	out := make([]api.AuditResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { out[i] = a.One(ctx, pin, t) })
	}
	wg.Wait()
	return out, nil
}

// Annotate adds to each replica of g what the audits found.
func (a *Auditor) Annotate(g api.GlobalPinInfo) api.GlobalPinInfo {
	for k, pi := range g.PeerMap {
		pid, err := peer.Decode(k)
		if err != nil {
			continue
		}
		if r, ok := a.Replica(g.Cid, pid); ok {
			pi.LastVerified, pi.Audit = r.LastVerified, r.Verdict()
			g.PeerMap[k] = pi
		}
	}
	return g
}

// perTarget bounds the challenges in flight to each peer.
type perTarget struct {
	mu sync.Mutex
	by map[peer.ID]*slots
}

// slots are one peer's: the challenges in flight, and the callers holding
// or waiting for one (the entry goes when none is left).
type slots struct {
	ch    chan struct{}
	users int
}

// acquire waits for one of n slots for t (n 0: none needed).
func (p *perTarget) acquire(ctx context.Context, t peer.ID, n int) error {
	if n <= 0 {
		return nil
	}
	p.mu.Lock()
	if p.by == nil {
		p.by = map[peer.ID]*slots{}
	}
	s := p.by[t]
	if s == nil {
		s = &slots{ch: make(chan struct{}, n)}
		p.by[t] = s
	}
	s.users++
	p.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		p.done(t)
		return ctx.Err()
	}
}

func (p *perTarget) release(t peer.ID) {
	p.mu.Lock()
	s := p.by[t]
	p.mu.Unlock()
	if s == nil {
		return // no bound
	}
	<-s.ch
	p.done(t)
}

func (p *perTarget) done(t peer.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.by[t]; s != nil {
		if s.users--; s.users <= 0 {
			delete(p.by, t)
		}
	}
}

// answer is what came of a challenge.
type answer int

const (
	passed answer = iota
	failed
	silent   // no answer: judged by the round (Auditor.Round)
	fetching // "still fetching", within Config.FetchLimit: counts for nothing
	// overdue: "still fetching" past Config.FetchLimit: the replica fails
	// (and moves after FailRounds), but the peer, which does not claim
	// to hold it, is not blamed: the data may be nowhere to be had.
	overdue
)

func (a *Auditor) heardSince(t peer.ID, sent time.Time) bool {
	return a.deps.HeardSince == nil || a.deps.HeardSince(t, sent)
}

// ask challenges t to prove it holds pin and records a pass, a failed
// proof or a holder still fetching; an answer that never came (silent) is
// left to the caller, who knows when to decide whether t was alive
// meanwhile.
func (a *Auditor) ask(ctx context.Context, pin api.Pin, t peer.ID) (r api.AuditResult, sent time.Time, got answer) {
	c := pin.Cid
	ch := Challenge{Root: c.Cid}
	rand.Read(ch.Nonce[:])
	deadline := a.cfg.Deadline.D()
	var res Outcome
	sent = time.Now()
	if t == a.deps.Self {
		blocks, err := a.deps.Prove(ctx, ch)
		if err == nil {
			err = Verify(ch, blocks, sent, time.Now(), deadline)
		}
		res = Outcome{Blocks: len(blocks), Took: time.Since(sent), Err: err}
		for _, b := range blocks {
			res.Bytes += len(b)
		}
	} else {
		if err := a.asking.acquire(ctx, t, a.deps.AskSlots); err != nil {
			return api.AuditResult{Cid: c, Peer: t, Peername: a.name(t), Error: err.Error()}, sent, silent
		}
		sent = time.Now()
		res = a.deps.Ask(ctx, t, ch, deadline)
		a.asking.release(t)
	}
	switch {
	case res.Err == nil:
		got = passed
	case errors.Is(res.Err, ErrNoAnswer):
		got = silent
	case errors.Is(res.Err, ErrFetching):
		// Fetching is no proof: within the limit it is no failure
		// either; after it, the holder had its time.
		age, limit := time.Since(pin.Timestamp), a.cfg.FetchLimit.D()
		if age < limit {
			got = fetching
		} else {
			got = overdue
			res.Err = fmt.Errorf("%w, %s after the pin was written (audit.fetch_limit %s)", res.Err, age.Round(time.Second), limit)
		}
	default:
		got = failed
	}
	if ctx.Err() == nil {
		switch got {
		case passed, failed:
			a.record(c, t, time.Now(), res.Err)
		case fetching, overdue:
			a.recordFetching(c, t, time.Now(), res.Err, got == overdue)
		}
		if got == passed && a.deps.Passed != nil {
			if err := a.deps.Passed(ctx, t); err != nil {
				logger.Warnf("recording that %s passed an audit: %s", t, err)
			}
		}
	}
	r = api.AuditResult{Cid: c, Peer: t, Peername: a.name(t), OK: got == passed, Fetching: got == fetching,
		Blocks: res.Blocks, Bytes: res.Bytes, TookMs: res.Took.Milliseconds()}
	if res.Err != nil {
		r.Error = res.Err.Error()
		if got != fetching {
			logger.Warnf("audit of %s (%s) for %s failed: %s", t, r.Peername, c, res.Err)
		}
	}
	return r, sent, got
}

// record keeps one audit's verdict for the peer and the replica.
func (a *Auditor) record(c api.Cid, t peer.ID, at time.Time, err error) {
	a.Peers.Add(t, at, err)
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.replica(c, t)
	r.LastAudit, r.Fetching = at, false
	if err == nil {
		a.total.passed++
		r.LastVerified, r.Failing, r.LastError = at, 0, ""
		return
	}
	a.total.failed++
	r.Failing++
	r.LastError = err.Error()
	a.lost(c, t, r)
}

// recordFetching keeps an answer "still fetching" for the replica only
// (the peer's record stays as it was): within the fetch limit the
// failures in a row stay as they were; past it (overdue) it is one more.
func (a *Auditor) recordFetching(c api.Cid, t peer.ID, at time.Time, err error, overdue bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	msg := err.Error()
	if i := strings.Index(msg, ErrFetching.Error()); i >= 0 {
		msg = msg[i:] // what the holder said, not who was asked for what
	}
	r := a.replica(c, t)
	r.LastAudit, r.Fetching, r.LastError = at, true, msg
	if overdue {
		a.total.failed++
		r.Failing++
		a.lost(c, t, r)
	}
}

// lost tells the repair when r, the replica of c at t, has just failed
// FailRounds audits in a row. a.mu must be held.
func (a *Auditor) lost(c api.Cid, t peer.ID, r *Replica) {
	if r.Failing != a.cfg.FailRounds || a.cfg.FailRounds <= 0 {
		return
	}
	logger.Warnf("replica lost: %s at %s (%s) failed %d audits in a row (last: %.200s); the repair moves it", c, t, a.name(t), r.Failing, r.LastError)
	if a.deps.Lost != nil {
		go a.deps.Lost() // outside the lock; it only wakes the repair
	}
}

// replica is the record of c at t, made if new. a.mu must be held.
func (a *Auditor) replica(c api.Cid, t peer.ID) *Replica {
	k := replicaKey{c.Key(), t}
	r := a.replicas[k]
	if r == nil {
		if len(a.replicas) >= MaxReplicas {
			a.evictReplica()
		}
		r = &Replica{}
		a.replicas[k] = r
	}
	return r
}

func (a *Auditor) evictReplica() {
	var oldest replicaKey
	var at time.Time
	first := true
	for k, r := range a.replicas {
		if first || r.LastAudit.Before(at) {
			oldest, at, first = k, r.LastAudit, false
		}
	}
	delete(a.replicas, oldest)
}

// Run runs a round at a random point of every interval until ctx ends
// (interval 0: never).
func (a *Auditor) Run(ctx context.Context) {
	iv := a.cfg.Interval.D()
	if iv <= 0 {
		return
	}
	for {
		at := time.Duration(mrand.Int64N(int64(iv)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(at):
		}
		a.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(iv - at):
		}
	}
}

// Round audits a sample of the pins with allocations (shards included)
// this peer is in charge of, written at least Grace ago, and again every replica whose last audit
// failed, at every peer each is allocated to but this one; then it counts
// the peers that failed every audit of the round, and suspends those that
// did so FailRounds rounds in a row. It returns how many audits it made.
func (a *Auditor) Round(ctx context.Context) int {
	s := Sampler[api.Pin]{N: a.cfg.Sample}
	type job struct {
		pin api.Pin
		t   peer.ID
	}
	var jobs []job
	live := func(peer.ID) bool { return true }
	if a.deps.Live != nil {
		set := map[peer.ID]bool{}
		for _, pid := range a.deps.Live() {
			set[pid] = true
		}
		live = func(pid peer.ID) bool { return set[pid] }
	}
	// newcomers: one pin of each peer not verified yet (the first met).
	newcomers := map[peer.ID]bool{}
	settled := time.Now().Add(-a.cfg.Grace.D())
	err := a.deps.Pins(ctx, func(pin api.Pin) error {
		if len(pin.Allocations) == 0 || pin.Timestamp.After(settled) || !a.deps.InCharge(pin.Cid.Key()) {
			return nil
		}
		sampled := false
		for _, t := range pin.Allocations {
			if t == a.deps.Self || !live(t) {
				continue
			}
			if r, ok := a.Replica(pin.Cid, t); ok && r.Failing > 0 {
				jobs = append(jobs, job{pin, t})
				sampled = true
			} else if a.deps.Unverified != nil && !newcomers[t] && len(newcomers) < maxNewcomers && a.deps.Unverified(t) {
				newcomers[t] = true
				jobs = append(jobs, job{pin, t})
				sampled = true
			}
		}
		if !sampled {
			s.Offer(pin)
		}
		return nil
	})
	if err != nil {
		return 0
	}
	for _, pin := range s.Items {
		for _, t := range pin.Allocations {
			if t != a.deps.Self && live(t) {
				jobs = append(jobs, job{pin, t})
			}
		}
	}
	type tally struct{ passed, failed int }
	type silence struct {
		pin  api.Pin
		t    peer.ID
		sent time.Time
		err  string
	}
	var mu sync.Mutex
	by := map[peer.ID]*tally{}
	answered := map[peer.ID]bool{} // any answer, a proof or not
	count := func(t peer.ID, ok bool) {
		tl := by[t]
		if tl == nil {
			tl = &tally{}
			by[t] = tl
		}
		if ok {
			tl.passed++
		} else {
			tl.failed++
		}
	}
	// run asks each of list, maxConcurrent at once, and returns the
	// challenges nobody answered.
	run := func(list []job) []silence {
		var quiet []silence
		sem := make(chan struct{}, maxConcurrent)
		var wg sync.WaitGroup
		for _, j := range list {
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if a.deps.Live != nil && !slices.Contains(a.deps.Live(), j.t) {
					return // gone since the round began
				}
				r, sent, got := a.ask(ctx, j.pin, j.t)
				mu.Lock()
				defer mu.Unlock()
				answered[j.t] = answered[j.t] || got != silent
				switch got {
				case silent:
					quiet = append(quiet, silence{j.pin, j.t, sent, r.Error})
				case passed, failed:
					count(j.t, got == passed)
				}
			})
		}
		wg.Wait()
		return quiet
	}
	quiet := run(jobs)
	// A challenge not answered is asked once more, after the others (a
	// slow moment, a stream lost to a reconnection).
	if len(quiet) > 0 && ctx.Err() == nil {
		again := make([]job, len(quiet))
		for i, q := range quiet {
			again[i] = job{q.pin, q.t}
		}
		quiet = run(again)
	}
	if ctx.Err() != nil {
		return len(jobs)
	}
	// The challenges nobody answered count only against the peers heard
	// from since: wait until a heartbeat would have come.
	if len(quiet) > 0 && a.deps.HeardSince != nil {
		last := quiet[0].sent
		for _, q := range quiet {
			if q.sent.After(last) {
				last = q.sent
			}
		}
		select {
		case <-ctx.Done():
			return len(jobs)
		case <-time.After(time.Until(last.Add(a.deps.Settle + time.Second))):
		}
	}
	// A peer that answered other challenges of this round and was silent
	// on these (twice) chose silence where it had no proof: each is a
	// failure of the replica. A peer that answered none was cut off from
	// this writer, or shuts writers out: nothing fails, but the spell is
	// counted (suspended past SilenceLimit).
	now := time.Now()
	mute := map[peer.ID]bool{}
	for _, q := range quiet {
		if !a.heardSince(q.t, q.sent) {
			continue
		}
		if answered[q.t] {
			a.record(q.pin.Cid, q.t, now, errors.New(q.err))
			count(q.t, false)
			continue
		}
		mute[q.t] = true
	}
	why := map[peer.ID]string{}
	a.mu.Lock()
	for pid := range mute {
		m := a.mute[pid]
		if m == nil {
			m = &muteSpell{since: now}
			a.mute[pid] = m
			logger.Infof("%s (%s) answers none of this writer's audits while its heartbeats arrive (cut off one way, or shutting writers out)", pid, a.name(pid))
		}
		m.rounds++
		if a.cfg.FailRounds > 0 && m.rounds >= a.cfg.FailRounds && now.Sub(m.since) >= a.cfg.SilenceLimit.D() {
			why[pid] = fmt.Sprintf("answered no audit for %s (%d rounds) while its heartbeats arrived", now.Sub(m.since).Round(time.Second), m.rounds)
		}
	}
	for _, j := range jobs {
		if !mute[j.t] {
			delete(a.mute, j.t) // answered, or not heard: no spell in a row
		}
	}
	for pid, tl := range by {
		if tl.passed > 0 {
			delete(a.failed, pid)
			continue
		}
		a.failed[pid]++
		if a.cfg.FailRounds > 0 && a.failed[pid] >= a.cfg.FailRounds {
			why[pid] = fmt.Sprintf("failed every audit of %d rounds in a row", a.failed[pid])
		}
	}
	// A peer that lost FailRounds replicas (each failed FailRounds audits
	// in a row) dropped data it said it held: it goes whole, not one
	// sampled replica a round.
	if a.cfg.FailRounds > 0 {
		lost := map[peer.ID]int{}
		for k, r := range a.replicas {
			if r.Failing >= a.cfg.FailRounds && !r.Fetching {
				lost[k.pid]++
			}
		}
		for pid, n := range lost {
			if n >= a.cfg.FailRounds && why[pid] == "" {
				why[pid] = fmt.Sprintf("%d of its replicas failed %d audits in a row", n, a.cfg.FailRounds)
			}
		}
	}
	var suspend []peer.ID
	for pid := range why {
		suspend = append(suspend, pid)
	}
	a.mu.Unlock()
	slices.Sort(suspend)
	for _, pid := range suspend {
		a.suspend(ctx, pid, why[pid])
	}
	return len(jobs)
}

// Lost are the replicas whose last FailRounds audits all failed, by CID
// key (none when FailRounds is 0): the repair moves them to other peers.
func (a *Auditor) Lost() map[string][]peer.ID {
	out := map[string][]peer.ID{}
	if a.cfg.FailRounds <= 0 {
		return out
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, r := range a.replicas {
		if r.Failing >= a.cfg.FailRounds {
			out[k.cid] = append(out[k.cid], k.pid)
		}
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

// FailedRounds is how many rounds in a row every audit of pid failed.
func (a *Auditor) FailedRounds(pid peer.ID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed[pid]
}

func (a *Auditor) suspend(ctx context.Context, pid peer.ID, why string) {
	if a.deps.Suspend == nil || (a.deps.Exempt != nil && a.deps.Exempt(pid)) {
		return
	}
	rec, _ := a.Peers.Get(pid)
	note := fmt.Sprintf("suspended by audits: %s (%d failures; last: %.120s)", why, rec.Failed, rec.LastError)
	if len(note) > api.MaxAdmissionNote {
		note = strings.ToValidUTF8(note[:api.MaxAdmissionNote], "")
	}
	if err := a.deps.Suspend(ctx, pid, note); err != nil {
		logger.Errorf("suspending %s (%s) after failed audits: %s", pid, a.name(pid), err)
		return
	}
	// What it failed is settled: a curator who admits it again gives it
	// a fresh start.
	a.mu.Lock()
	a.total.suspended++
	delete(a.failed, pid)
	delete(a.mute, pid)
	for k := range a.replicas {
		if k.pid == pid {
			delete(a.replicas, k)
		}
	}
	a.mu.Unlock()
	logger.Warnf("suspended %s (%s): %s", pid, a.name(pid), note)
}
