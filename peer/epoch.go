package peer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/repair"
)

// Epochs (docs/adr/0009-compaction.md). The pinset this peer reads and
// writes is one epoch's; a writer starts the next one by copying the live
// pins into a fresh CRDT namespace and announcing a signed record of it on
// the epochs topic. Every peer that hears of a newer epoch opens it beside
// the current one (its own heads topic, the same DAG protocols), syncs it
// until it has merged the heads the record names, records it as current,
// durably, and switches: writes go to the new epoch from then on, a writer
// carries over what it wrote to the old one meanwhile, and the old
// epoch's namespace is dropped.

// epochRun is the epoch this peer runs: its record, its pinset and the
// broadcaster of its heads topic.
type epochRun struct {
	cur   crdtstate.CurrentEpoch
	state *crdtstate.State
	bcast *p2p.Broadcaster
	since time.Time // when this peer switched to it (zero: it started in it)
}

// st is the current epoch's pinset (nil before New opened it).
func (p *Peer) st() *crdtstate.State {
	if r := p.run.Load(); r != nil {
		return r.state
	}
	return nil
}

// headsTopic is the heads topic of epoch e (epoch 0's is the one peers
// always used).
func headsTopic(ns string, e uint64) string {
	if e == 0 {
		return ns + "/heads"
	}
	return fmt.Sprintf("%s/heads-e%d", ns, e)
}

// maxEpochMessage bounds an epoch record's envelope on the topic (the
// most heads and marks fit in ~80 KiB).
const maxEpochMessage = 128 << 10

// openEpoch opens epoch e's pinset and joins its heads topic. The pinset's
// changes reach the tracker only while it is the current one (initial:
// it is, from the start).
func (p *Peer) openEpoch(ctx context.Context, e uint64, initial bool) (*crdtstate.State, *p2p.Broadcaster, error) {
	bc, err := p.node.NewBroadcaster(headsTopic(p.ns, e), p.signer, p.verifier)
	if err != nil {
		return nil, nil, err
	}
	var me atomic.Pointer[crdtstate.State]
	bc.Trusted = p.isWriter
	bc.Height = func() uint64 {
		if st := me.Load(); st != nil {
			return st.Height(ctx)
		}
		return 0
	}
	current := func() bool {
		st := me.Load()
		if st == nil {
			return initial
		}
		return st == p.st()
	}
	deps := p.epochDeps(e)
	deps.Broadcaster = bc
	deps.OnChange = func(c api.Cid, pin *api.Pin) {
		if current() {
			p.onChange(c, pin)
		}
	}
	deps.OnAdmissions = func() {
		if current() {
			p.admitted.Changed()
		}
	}
	st, err := crdtstate.New(ctx, p.cfg.State, deps)
	if err != nil {
		bc.Close()
		return nil, nil, err
	}
	me.Store(st)
	return st, bc, nil
}

// epochDeps are where epoch e's pinset lives in this peer's store, with
// the peer's DAG: offline until a broadcaster is set.
func (p *Peer) epochDeps(e uint64) crdtstate.Deps {
	ns := crdtstate.StateNamespace(p.ns, e)
	return crdtstate.Deps{Store: p.store, Namespace: ns, JournalDir: crdtstate.JournalDir(p.cfg.DatastorePath(p.dir), ns),
		BlocksNamespace: p.ns + "/blocks", DAG: p.node.DAG, Origin: p.host.ID(), Epoch: e}
}

// checkEpoch verifies a sealed epoch record: a write key of this cluster
// signed it, for epochs, and it names its maker and its heads.
func (p *Peer) checkEpoch(env []byte) (api.Epoch, error) {
	var rec api.Epoch
	if len(env) > maxEpochMessage {
		return rec, fmt.Errorf("epoch record of %d bytes (at most %d)", len(env), maxEpochMessage)
	}
	e, err := p.verifier.CheckEpoch(env)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(e.Payload, &rec); err != nil {
		return rec, fmt.Errorf("epoch record: %w", err)
	}
	if err := rec.Validate(); err != nil {
		return rec, err
	}
	if string(rec.By) != e.Origin {
		return rec, fmt.Errorf("epoch record of %s sealed by %s", rec.By, peer.ID(e.Origin))
	}
	return rec, nil
}

// joinEpochs joins the epochs topic: records from the network are checked
// (a bad one is rejected and counts against its sender's score), a newer
// epoch is adopted, and this peer repeats its current epoch's record now
// and then, for peers that were away.
func (p *Peer) joinEpochs(ctx context.Context) error {
	topic := p.ns + "/epochs"
	err := p.node.PubSub.RegisterTopicValidator(topic, func(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		rec, err := p.checkEpoch(msg.Data)
		if err != nil {
			if from != p.host.ID() {
				logger.Warnf("dropping an epoch record from %s: %s", from, err)
				p.epochRejected.Add(1)
			}
			return pubsub.ValidationReject
		}
		msg.ValidatorData = rec
		return pubsub.ValidationAccept
	})
	if err != nil {
		return err
	}
	t, err := p.node.PubSub.Join(topic)
	if err != nil {
		return err
	}
	if err := t.SetScoreParams(p2p.TopicScore()); err != nil {
		return err
	}
	sub, err := t.Subscribe()
	if err != nil {
		return err
	}
	p.epochTopic = t
	events, err := t.EventHandler()
	if err != nil {
		sub.Cancel()
		return err
	}
	p.wg.Go(func() {
		defer events.Cancel()
		p.greetEpochs(ctx, t, events)
	})
	p.wg.Go(func() {
		defer sub.Cancel()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			rec, ok := msg.ValidatorData.(api.Epoch)
			if ok && rec.Epoch > p.run.Load().cur.N() && !p.switching.Load() {
				p.wg.Go(func() { p.adopt(ctx, crdtstate.CurrentEpoch{Record: rec, Envelope: msg.Data}) })
			}
		}
	})
	p.wg.Go(func() {
		tick := time.NewTicker(epochRepeat * p.cfg.State.RebroadcastInterval.D())
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if cur := p.run.Load().cur; cur.N() > 0 && len(cur.Envelope) > 0 {
				if err := t.Publish(ctx, cur.Envelope); err != nil {
					logger.Debugf("repeating the epoch record: %s", err)
				}
			}
		}
	})
	return nil
}

// greetEpochs publishes this peer's current epoch record when a peer
// joins the epochs topic, or when a member's heartbeat says it is in an
// older epoch (a peer restarted faster than gossipsub noticed it had
// gone shows no join), so that a newcomer (a new peer, one back from a
// long sleep) adopts the current epoch at once instead of at the next
// repeat (up to epochRepeat rebroadcast intervals later), syncing through
// the DAG the epoch's copy rather than the history of an older epoch. The
// writers on the topic greet; a follower greets only when it has no
// writer on the topic. As with the heads topic's greetings (p2p.GreetPeers),
// none with more than p2p.GreetPeers peers on the topic — each greeting
// reaches every peer, and joins come with every router reboot —, and at
// most one a p2p.GreetGap whatever the joins and heartbeats.
func (p *Peer) greetEpochs(ctx context.Context, t *pubsub.Topic, events *pubsub.TopicEventHandler) {
	joins := make(chan struct{}, 1)
	p.wg.Go(func() {
		for {
			ev, err := events.NextPeerEvent(ctx)
			if err != nil {
				return
			}
			if ev.Type == pubsub.PeerJoin {
				select {
				case joins <- struct{}{}:
				default:
				}
			}
		}
	})
	tick := time.NewTicker(p2p.GreetGap)
	defer tick.Stop()
	var last time.Time
	for {
		joined := false
		select {
		case <-ctx.Done():
			return
		case <-joins:
			joined = true
		case <-tick.C:
		}
		if time.Since(last) < p2p.GreetGap {
			continue // the next tick looks again if a peer still lags
		}
		cur := p.run.Load().cur
		if cur.N() == 0 || len(cur.Envelope) == 0 {
			continue
		}
		onTopic := t.ListPeers()
		if len(onTopic) > p2p.GreetPeers {
			continue
		}
		if !p.isWriter(p.host.ID()) && slices.ContainsFunc(onTopic, p.isWriter) {
			continue // a writer there greets
		}
		if !joined && !p.someoneLags(cur.N()) {
			continue
		}
		last = time.Now()
		p.epochGreetings.Add(1)
		if err := t.Publish(ctx, cur.Envelope); err != nil {
			logger.Debugf("greeting with the epoch record: %s", err)
		}
	}
}

// someoneLags reports whether a member's live heartbeat says it is in an
// epoch older than cur.
func (p *Peer) someoneLags(cur uint64) bool {
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricEpoch) {
		if e, err := strconv.ParseUint(mt.Value, 10, 64); err == nil && e < cur && mt.Peer != p.host.ID() && p.admitted.Allocatable(mt.Peer) {
			return true
		}
	}
	return false
}

// epochRepeat: a peer repeats its epoch's record every epochRepeat
// rebroadcast intervals (30 s at the defaults).
const epochRepeat = 6

// adopt switches this peer to the newer epoch cur once it has merged the
// heads its record names; it gives up after state.epoch_wait (and tries
// again when it hears the record next).
func (p *Peer) adopt(ctx context.Context, cur crdtstate.CurrentEpoch) {
	if !p.switching.CompareAndSwap(false, true) {
		return
	}
	defer p.switching.Store(false)
	if cur.N() <= p.run.Load().cur.N() {
		return
	}
	logger.Infof("epoch %d announced (made by %s): syncing its copy of the live pinset", cur.N(), cur.Record.By)
	st, bc, err := p.openEpoch(ctx, cur.N(), false)
	if err != nil {
		logger.Warnf("opening epoch %d: %s", cur.N(), err)
		return
	}
	heads := make([]cid.Cid, len(cur.Record.Heads))
	for i, h := range cur.Record.Heads {
		heads[i] = h.Cid
	}
	giveUp := time.Now().Add(p.cfg.State.EpochWait.D())
	for {
		ok, err := st.Merged(ctx, heads)
		if ok {
			break
		}
		if err != nil || time.Now().After(giveUp) || ctx.Err() != nil {
			if ctx.Err() == nil {
				logger.Warnf("epoch %d: not merged after %s (%v): staying in epoch %d for now", cur.N(), p.cfg.State.EpochWait.D(), err, p.run.Load().cur.N())
			}
			st.Close()
			bc.Close()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := p.switchTo(ctx, cur, st, bc); err != nil {
		logger.Errorf("switching to epoch %d: %s", cur.N(), err)
	}
}

// Compact starts a new epoch (ADR 9): the live pinset copied into it, the
// record signed and announced, this peer switched. Only a writer may.
func (p *Peer) Compact(ctx context.Context) (api.Epoch, error) {
	if err := p.CheckWrite(); err != nil {
		return api.Epoch{}, err
	}
	if !p.switching.CompareAndSwap(false, true) {
		return api.Epoch{}, fmt.Errorf("%w: this peer is switching epochs already", api.ErrTooMany)
	}
	defer p.switching.Store(false)
	run := p.run.Load()
	n := run.cur.N() + 1
	began := time.Now()
	st, bc, err := p.openEpoch(ctx, n, false)
	if err != nil {
		return api.Epoch{}, err
	}
	cur, cs, err := crdtstate.StartEpoch(ctx, run.state, st, run.cur.Record, n, p.host.ID(), time.Now(), p.signer.SealEpoch)
	if err != nil {
		st.Close()
		bc.Close()
		return api.Epoch{}, err
	}
	logger.Infof("epoch %d: copied %d pins in %s", n, cs.Pins, time.Since(began).Round(time.Millisecond))
	return cur.Record, p.switchTo(ctx, cur, st, bc)
}

// switchTo makes cur (whose pinset st has merged cur's heads) the current
// epoch: recorded durably first, then swapped in between two writes,
// announced; then the old epoch is retired.
func (p *Peer) switchTo(ctx context.Context, cur crdtstate.CurrentEpoch, st *crdtstate.State, bc *p2p.Broadcaster) error {
	old := p.run.Load()
	// A writer carries over the late writes to the old epoch, those the
	// copy did not see, before the swap, so that a client reads its own
	// writes across it: most while writes go on, the rest while they wait.
	cov := crdtstate.CoverageFor(ctx, old.state, cur.Record, p.host.ID(), p.goneWriters())
	if p.writeKey != nil {
		if err := p.carryOver(ctx, old.state, st, cur.N(), cov); err != nil {
			st.Close()
			bc.Close()
			return err
		}
	}
	if err := crdtstate.SaveCurrentEpoch(ctx, p.store, p.ns, cur); err != nil {
		st.Close()
		bc.Close()
		return err
	}
	p.epochMu.Lock()
	again := false // retire carries over once more, and the next start if need be
	if p.writeKey != nil {
		if err := p.carryOver(ctx, old.state, st, cur.N(), cov); err != nil {
			logger.Warnf("epoch %d: %s", cur.N(), err)
			again = true
		}
	}
	p.run.Store(&epochRun{cur: cur, state: st, bcast: bc, since: time.Now()})
	p.epochMu.Unlock()
	logger.Infof("now in epoch %d (was %d)", cur.N(), old.cur.N())
	if p.epochTopic != nil {
		if err := p.epochTopic.Publish(ctx, cur.Envelope); err != nil {
			logger.Debugf("announcing epoch %d: %s", cur.N(), err)
		}
	}
	return p.retire(ctx, old.cur.N(), old.state, old.bcast, again)
}

// retireGrace is how long an old epoch stays open after the switch, for
// reads that began before it.
var retireGrace = 2 * time.Second

// retire ends epoch e, whose pinset is old (nil: not open, left by a stop
// mid-switch), and drops e's namespace; with carry, a writer first
// carries over into the current epoch what it wrote to e and the copy
// missed (switchTo did already, its last pass with writes held).
func (p *Peer) retire(ctx context.Context, e uint64, old *crdtstate.State, bc *p2p.Broadcaster, carry bool) error {
	cur := p.run.Load()
	if old == nil {
		var err error
		// Left by a stop during a switch: opened offline.
		if old, err = crdtstate.New(ctx, p.cfg.State, p.epochDeps(e)); err != nil {
			return fmt.Errorf("opening epoch %d to retire it: %w", e, err)
		}
	}
	if carry && p.writeKey != nil {
		cov := crdtstate.CoverageFor(ctx, old, cur.cur.Record, p.host.ID(), p.goneWriters())
		if err := p.carryOver(ctx, old, cur.state, cur.cur.N(), cov); err != nil {
			return err // kept: the next start retires it again
		}
	}
	if bc != nil {
		select {
		case <-ctx.Done():
		case <-time.After(retireGrace):
		}
	}
	err := old.Close()
	if bc != nil {
		bc.Close()
	}
	if err != nil {
		return err
	}
	oldNS := crdtstate.StateNamespace(p.ns, e)
	if err := crdtstate.DropEpoch(ctx, p.store, oldNS, p.ns+"/blocks", crdtstate.StateNamespace(p.ns, cur.cur.N()),
		crdtstate.JournalDir(p.cfg.DatastorePath(p.dir), oldNS)); err != nil {
		return fmt.Errorf("dropping epoch %d: %w", e, err)
	}
	p.lastRetired.Store(time.Now().UnixNano())
	logger.Infof("epoch %d dropped", e)
	return nil
}

// carryOver brings the late writes to an older epoch's pinset old (packed
// first; cov says which are late) into epoch e's pinset cur.
func (p *Peer) carryOver(ctx context.Context, old, cur *crdtstate.State, e uint64, cov crdtstate.Coverage) error {
	if err := old.Flush(ctx); err != nil {
		return fmt.Errorf("carrying over into epoch %d: %w", e, err)
	}
	n, err := crdtstate.CarryOverAll(ctx, old, cur, cov)
	if n > 0 {
		logger.Infof("epoch %d: carried over %d records written to the epoch before", e, n)
	}
	if err != nil {
		return fmt.Errorf("carrying over into epoch %d: %w", e, err)
	}
	return nil
}

// dropNewer drops the epochs after the current one that a stop in the
// middle of a copy or a sync left behind (crdtstate.EpochsAfter); a peer
// that hears of one of them again syncs it afresh.
func (p *Peer) dropNewer(ctx context.Context) error {
	cur := p.run.Load().cur.N()
	left, err := crdtstate.EpochsAfter(p.store, p.ns, cur)
	if err != nil {
		return err
	}
	for _, e := range left {
		ns := crdtstate.StateNamespace(p.ns, e)
		if err := crdtstate.DropEpoch(ctx, p.store, ns, p.ns+"/blocks", crdtstate.StateNamespace(p.ns, cur),
			crdtstate.JournalDir(p.cfg.DatastorePath(p.dir), ns)); err != nil {
			return fmt.Errorf("dropping the unfinished epoch %d: %w", e, err)
		}
		logger.Infof("dropped what a stop left of epoch %d (this peer is in epoch %d)", e, cur)
	}
	return nil
}

// goneWriters tells the peers that count as gone for good by the repair
// rule (dead for repair.grace, or never heard since this peer has
// listened long enough): a writer carries their late writes over for
// them (crdtstate.Coverage).
func (p *Peer) goneWriters() func(peer.ID) bool {
	if p.monitor == nil {
		return nil // at the start, before the monitor (retireOlder): nobody
	}
	grace := p.cfg.Repair.Grace.D()
	dead, unheard := p.monitor.Dead(grace), p.monitor.Unheard(grace)
	return func(o peer.ID) bool { return dead[o] || unheard != nil && unheard(o) }
}

// retireOlder retires the epochs before the current one that a stop in
// the middle of a switch left behind.
func (p *Peer) retireOlder(ctx context.Context) error {
	n := p.run.Load().cur.N()
	for e := range n {
		// Its namespace only: the blocks are every epoch's.
		ns := crdtstate.StateNamespace(p.ns, e)
		empty, err := crdtstate.IsEmpty(p.store, ns, ns)
		if err != nil {
			return err
		}
		if !empty {
			if err := p.retire(ctx, e, nil, nil, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// mayStartEpoch reports whether this writer may start an epoch on its own:
// no writer's heartbeat says it is in a later epoch, and live, the writers
// live now, are more than half of the writers this peer has heard from
// (live or not), and it has listened long enough to know (a heartbeat's
// TTL plus repair.grace):
// of two sides of a split, at most one starts epochs on its own — two
// copies of one epoch made apart would merge into one namespace, where a
// record one maker saw removed and the other did not comes back (ADR 9,
// amendment 3).
func (p *Peer) mayStartEpoch(live []peer.ID) bool {
	if p.monitor.Unheard(p.cfg.Repair.Grace.D()) == nil {
		return false
	}
	// A writer back from a split hears the others' heartbeats (and so
	// counts them live) before it hears the record of the epoch they
	// started meanwhile; their heartbeats say which epoch they are in.
	cur := p.run.Load().cur.N()
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricEpoch) {
		if e, err := strconv.ParseUint(mt.Value, 10, 64); err == nil && e > cur && p.isWriter(mt.Peer) {
			logger.Infof("not starting an epoch: writer %s is in epoch %d, this peer in %d", mt.Peer, e, cur)
			return false
		}
	}
	known := map[peer.ID]bool{p.host.ID(): true}
	for _, mt := range p.monitor.Latest(pubsubmon.MetricPing) {
		if p.isWriter(mt.Peer) {
			known[mt.Peer] = true
		}
	}
	if 2*len(live) > len(known) {
		return true
	}
	logger.Infof("not starting an epoch: %d of the %d writers heard from are live", len(live), len(known))
	return false
}

// compactLoop rewrites value log files mostly garbage and counts the
// current epoch's history every state.compact_check (for the metrics),
// settles the store once whenever the pinset has been quiet for a check
// (crdtstate.State.Settle) and,
// on a writer, starts a new epoch when the history
// outgrew state.compact_ratio × the live entries + state.compact_floor and
// this writer is the one in charge of doing so.
func (p *Peer) compactLoop(ctx context.Context) {
	tick := time.NewTicker(p.cfg.State.CompactCheck.D())
	defer tick.Stop()
	// The history at the last check, and whether the store was settled
	// since it last changed (crdtstate.SettleStore, once per quiet spell).
	var before *crdtstate.History
	settled := false
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		crdtstate.CollectValueLog(ctx, p.store)
		run := p.run.Load()
		h, err := run.state.History(ctx)
		if err != nil {
			logger.Debugf("counting the pinset's history: %s", err)
			continue
		}
		p.history.Store(&h)
		quiet := before != nil && *before == h
		before = &h
		if !quiet {
			settled = false
		} else if !settled && !p.switching.Load() {
			settled = true
			if err := run.state.Settle(ctx); err != nil && ctx.Err() == nil {
				logger.Warnf("giving back the quiet store's dead space: %s", err)
			} else if err == nil {
				logger.Infof("the pinset is quiet: store flushed, value log files with dead data rewritten, journal emptied")
			}
		}
		ratio, floor := p.cfg.State.CompactRatio, p.cfg.State.CompactFloor
		if p.writeKey == nil || ratio == 0 || p.switching.Load() || h.Elements+h.Tombstones <= ratio*h.Live+floor {
			continue
		}
		live := p.liveTrusted()
		if !repair.InCharge(p.host.ID(), fmt.Sprintf("compact/%d", run.cur.N()+1), live) || !p.mayStartEpoch(live) {
			continue
		}
		logger.Infof("the pinset holds %d elements and %d tombstones for %d live entries: starting epoch %d",
			h.Elements, h.Tombstones, h.Live, run.cur.N()+1)
		if _, err := p.Compact(ctx); err != nil && ctx.Err() == nil {
			logger.Warnf("starting a new epoch: %s", err)
		}
	}
}

// writeSnapshot writes the snapshot stream: the current epoch's record
// (empty for epoch 0), then its pinset's snapshot.
func (p *Peer) writeSnapshot(ctx context.Context, w io.Writer) (crdtstate.SnapshotStats, error) {
	run := p.run.Load()
	if err := frame.Write(w, run.cur.Envelope); err != nil {
		return crdtstate.SnapshotStats{}, err
	}
	return run.state.WriteSnapshot(ctx, w)
}

// loadSnapshot reads what writeSnapshot wrote into the (empty) namespace
// of the epoch it is of, and makes that epoch current.
func (p *Peer) loadSnapshot(ctx context.Context, r io.Reader) (crdtstate.SnapshotStats, error) {
	br := bufio.NewReader(r)
	env, err := frame.Read(br, maxEpochMessage)
	if err != nil {
		return crdtstate.SnapshotStats{}, fmt.Errorf("snapshot's epoch record: %w", err)
	}
	var cur crdtstate.CurrentEpoch
	if len(env) > 0 {
		rec, err := p.checkEpoch(env)
		if err != nil {
			return crdtstate.SnapshotStats{}, fmt.Errorf("snapshot's epoch record: %w", err)
		}
		cur = crdtstate.CurrentEpoch{Record: rec, Envelope: env}
	}
	ns := crdtstate.StateNamespace(p.ns, cur.N())
	if _, err := crdtstate.DropPartialSnapshot(ctx, p.store, ns, p.ns+"/blocks"); err != nil {
		return crdtstate.SnapshotStats{}, err
	}
	got, err := crdtstate.LoadSnapshot(ctx, p.store, ns, p.ns+"/blocks", br)
	if err != nil || cur.N() == 0 {
		return got, err
	}
	return got, crdtstate.SaveCurrentEpoch(ctx, p.store, p.ns, cur)
}
