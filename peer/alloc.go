package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/pinring/pinring/allocate"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/repair"
)

// recentAllocs counts what this peer allocated to each peer from a metric
// TTL (3 × monitor.interval) before that peer's last heartbeat arrived. Those
// spread a burst, and with the pins the peer had queued at its last
// heartbeat they are the pins on their way to it, which reserve its
// measured size per pin: a heartbeat reflects a pin only once the pin has
// crossed the ring to the peer's tracker, and a window of a whole TTL
// covers that crossing even on a loaded machine (counting some twice errs
// on the safe side). DESIGN.md §7, docs/allocation.md.
type recentAllocs struct {
	mu sync.Mutex
	by map[peer.ID]*allocate.Recent
}

// maxPending bounds the pins a heartbeat may say are queued at a peer, so
// that a stranger's figure cannot overflow the allocator's arithmetic.
const maxPending = 1 << 40

// pinSize measures this peer's bytes per pin for its heartbeats.
type pinSize struct {
	mu    sync.Mutex
	meter allocate.SizeMeter
	done  atomic.Uint64 // pins this peer's tracker completed since start
}

// collectMetrics is this peer's heartbeat content besides ping and tags.
func (p *Peer) collectMetrics(ctx context.Context) []api.Metric {
	var out []api.Metric
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Monitor.Interval.D())
	defer cancel()
	// The pins counted done before kubo is asked have all grown its
	// repository: counted after, the pins completing during the call would
	// count without their bytes and the size would read small, reserving
	// too little for the pins on their way (seen under load: 400 pins of
	// 1 MiB accepted by 3 × 100 MiB).
	done := p.size.done.Load()
	if st, err := p.ipfs.RepoStat(ctx); err == nil {
		free := uint64(0)
		if st.StorageMax > st.RepoSize {
			free = st.StorageMax - st.RepoSize
		}
		full := repair.IsFull(st, p.cfg.Allocate.FullThreshold)
		p.size.mu.Lock()
		size, measured := p.size.meter.Observe(st.RepoSize, done)
		p.size.mu.Unlock()
		if measured {
			out = append(out, api.Metric{Name: pubsubmon.MetricPinSize, Value: strconv.FormatUint(size, 10)})
		}
		out = append(out, api.Metric{Name: pubsubmon.MetricFreeSpace, Value: strconv.FormatUint(free, 10)},
			api.Metric{Name: pubsubmon.MetricFull, Value: strconv.FormatBool(full)},
			api.Metric{Name: pubsubmon.MetricRepoSize, Value: strconv.FormatUint(st.RepoSize, 10)},
			api.Metric{Name: pubsubmon.MetricRepoMax, Value: strconv.FormatUint(st.StorageMax, 10)})
		p.noteFull(full, st)
	} else {
		logger.Debugf("kubo repo/stat for the freespace metric: %s", err)
	}
	if p.tracker != nil {
		pinned, queued := p.tracker.Counts()
		out = append(out,
			api.Metric{Name: pubsubmon.MetricPinned, Value: strconv.Itoa(pinned)},
			api.Metric{Name: pubsubmon.MetricQueued, Value: strconv.Itoa(queued)})
	}
	return out
}

// candidates are the peers that may take replicas now: a valid freespace
// metric, with the pins on their way to them (queued at their heartbeat,
// allocated by this peer since) and the size they measured for a pin.
// Peers whose metrics expired less than repair.grace ago are included as
// Full: they keep what they hold but take nothing new.
func (p *Peer) candidates() []allocate.Candidate {
	tags := map[peer.ID]map[string]string{}
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricTags) {
		var t map[string]string
		if json.Unmarshal([]byte(mt.Value), &t) == nil {
			tags[mt.Peer] = t
		}
	}
	figure := func(name string) map[peer.ID]uint64 {
		out := map[peer.ID]uint64{}
		for _, mt := range p.monitor.LatestValid(name) {
			if v, err := strconv.ParseUint(mt.Value, 10, 64); err == nil {
				out[mt.Peer] = v
			}
		}
		return out
	}
	queued, sizes := figure(pubsubmon.MetricQueued), figure(pubsubmon.MetricPinSize)
	full := p.fullPeers()
	now := time.Now()
	p.recent.mu.Lock()
	defer p.recent.mu.Unlock()
	var out []allocate.Candidate
	for _, mt := range p.monitor.Latest(pubsubmon.MetricFreeSpace) {
		if !mt.Valid {
			if now.Sub(time.Unix(0, mt.Expire)) < p.cfg.Repair.Grace.D() {
				out = append(out, allocate.Candidate{Peer: mt.Peer, Full: true, Tags: tags[mt.Peer]})
			}
			continue
		}
		free, err := strconv.ParseUint(mt.Value, 10, 64)
		if err != nil {
			continue
		}
		r := p.recent.by[mt.Peer]
		if r == nil {
			r = &allocate.Recent{}
			p.recent.by[mt.Peer] = r
		}
		// The window ends a TTL before the heartbeat arrived, not before
		// now: a heartbeat misses the pins still crossing the ring when it
		// was measured, and an older heartbeat misses more.
		ttl := 3 * int64(p.cfg.Monitor.Interval.D())
		lately := min(now.UnixNano(), mt.ReceivedAt) - ttl
		r.Forget(now.UnixNano() - 2*ttl)
		recently := r.Since(lately)
		size, ok := sizes[mt.Peer]
		if !ok {
			size = p.cfg.Allocate.PinSizeEstimate
		}
		out = append(out, allocate.Candidate{Peer: mt.Peer, FreeSpace: free,
			Pending: min(queued[mt.Peer], maxPending) + recently, Lately: recently, PinSize: size,
			Full: full[mt.Peer], Tags: tags[mt.Peer]})
	}
	return out
}

// allocate picks the peers for a pin (nil: every peer).
func (p *Peer) allocate(pin *api.Pin, current []peer.ID) ([]peer.ID, error) {
	if pin.ReplicationFactorMax == -1 {
		return nil, nil
	}
	allocs, err := allocate.Allocate(allocate.Request{
		Min: pin.ReplicationFactorMin, Max: pin.ReplicationFactorMax,
		Current: current, User: pin.UserAllocations,
		Candidates: p.candidates(), Policy: allocate.Policy{SpreadBy: p.cfg.Allocate.SpreadBy},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", api.ErrBadRequest, pin.Cid, err)
	}
	now := time.Now().UnixNano()
	p.recent.mu.Lock()
	for _, a := range allocs {
		if r := p.recent.by[a]; r != nil && !slices.Contains(current, a) {
			r.Add(now)
		}
	}
	p.recent.mu.Unlock()
	return allocs, nil
}

// liveTrusted lists the peers that may repair: this one and every peer
// whose ping is valid and that proved it holds a write key.
func (p *Peer) liveTrusted() []peer.ID {
	var out []peer.ID
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricPing) {
		if p.isWriter(mt.Peer) {
			out = append(out, mt.Peer)
		}
	}
	if !slices.Contains(out, p.host.ID()) {
		out = append(out, p.host.ID())
	}
	return out
}

// repairLoop re-allocates pins whose peers are gone (metrics expired for
// longer than repair.grace) and pins below their replication factor when
// capacity appears, and removes expired pins.
func (p *Peer) repairLoop(ctx context.Context) {
	tick := time.NewTicker(p.cfg.Repair.Interval.D())
	defer tick.Stop()
	expiry := time.NewTicker(p.cfg.Repair.ExpiryInterval.D())
	defer expiry.Stop()
	var lastCands, lastDead []peer.ID
	var lastPass time.Time
	if err := p.survey(ctx); err != nil && ctx.Err() == nil {
		logger.Warnf("surveying the pinset (the first passes walk it instead): %s", err)
	}
	// death fires when the next peer counts as dead, so that its pins
	// move then, not up to repair.interval later.
	death := time.NewTimer(time.Hour)
	defer death.Stop()
	for {
		death.Reset(time.Hour)
		if at, ok := p.monitor.NextDeath(p.cfg.Repair.Grace.D()); ok {
			death.Reset(time.Until(at) + 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-death.C:
		case <-expiry.C:
			if n, err := p.expirePass(ctx); err != nil && ctx.Err() == nil {
				logger.Warnf("expiry pass: %s", err)
			} else if n > 0 {
				logger.Infof("removed %d expired pins", n)
			}
			continue
		case <-tick.C:
		case <-p.repairNow: // a peer left: move its pins now
		}
		if !p.cfg.Repair.Enabled {
			continue
		}
		dead := p.deadPeers()
		deadList := slices.Sorted(maps.Keys(dead))
		var cands []peer.ID
		for _, c := range p.candidates() {
			if c.HasRoom() {
				cands = append(cands, c.Peer)
			}
		}
		slices.Sort(cands)
		// A pass walks the whole pinset: only when something changed
		// (who is gone, who can take pins, who is full) or every 5 min.
		full := p.fullPeers()
		changed := !slices.Equal(cands, lastCands) || !slices.Equal(deadList, lastDead)
		if !changed && len(full) == 0 && time.Since(lastPass) < 5*time.Minute {
			continue
		}
		lastCands, lastDead, lastPass = cands, deadList, time.Now()
		if len(dead) > 0 {
			res, err := p.ecRepair(ctx, nil, func(a peer.ID) bool { return dead[a] })
			if err != nil && ctx.Err() == nil {
				logger.Warnf("erasure repair: %s", err)
			}
			for _, r := range res {
				if r.Error != "" {
					logger.Warnf("erasure repair of %s: %s", r.Cid, r.Error)
				}
			}
		}
		n, err := p.repairPass(ctx, dead)
		if err != nil && ctx.Err() == nil {
			logger.Warnf("repair pass: %s", err)
		}
		if n > 0 {
			logger.Infof("repair: re-allocated %d pins", n)
		}
	}
}

// survey walks the pinset once, when the repair loop starts, so that the
// repair and expiry passes know whether they have work (repair.Watch). A new
// peer's pinset is empty: it costs nothing, and no pass walks a pinset
// holding only pins on every peer and none expiring.
func (p *Peer) survey(ctx context.Context) error {
	p.watch.Begin(time.Now())
	var soonest time.Time
	found := false
	err := p.eachPin(ctx, func(pin api.Pin) {
		soonest = repair.Earliest(soonest, pin.ExpireAt)
		found = found || repair.Repairable(&pin)
	})
	if err != nil {
		return err
	}
	p.watch.Surveyed(time.Now(), soonest, found)
	return nil
}

// deadPeers are the peers whose metrics expired more than repair.grace ago.
func (p *Peer) deadPeers() map[peer.ID]bool { return p.monitor.Dead(p.cfg.Repair.Grace.D()) }

// repairPass walks the pinset once and re-allocates, as the one peer in
// charge of each CID, the pins that have an allocation on a dead peer or
// fewer allocations than their maximum while more peers could take them.
func (p *Peer) repairPass(ctx context.Context, dead map[peer.ID]bool) (int, error) {
	if !p.watch.RepairDue() {
		return 0, nil // every pin is on every peer (repair.Watch)
	}
	p.watch.Begin(time.Now())
	room := 0
	for _, c := range p.candidates() {
		if c.HasRoom() {
			room++
		}
	}
	plan := repair.NewPlan(repair.View{Self: p.host.ID(), Live: p.liveTrusted(), Dead: dead, Full: p.fullPeers(),
		Room: room, RebalanceBatch: p.cfg.Repair.RebalanceBatch})
	if err := p.eachPin(ctx, plan.Consider); err != nil {
		return 0, err
	}
	p.watch.RepairWalked(time.Now(), plan.Found)
	// Allocations are decided one after another (each counts the ones
	// before it), and written many at once: each write waits for its
	// durable commit, and concurrent writes share one (group commit).
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(repairWrites)
	for _, m := range plan.Moves {
		if gctx.Err() != nil {
			break
		}
		pin := m.Pin
		allocs, err := p.allocate(&pin, m.Keep)
		if err != nil && !m.Rebalance {
			logger.Debugf("repair %s: %s (stays under-replicated; retried when capacity appears)", pin.Cid, err)
		}
		next, write := repair.Decide(m, allocs, err)
		if !write {
			continue
		}
		pin.Allocations = next
		g.Go(func() error {
			if err := p.write(gctx, &pin); err != nil {
				return err
			}
			n.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(n.Load()), err
}

// repairWrites is how many repair writes are in flight at once.
const repairWrites = 64

// RepoStats are every live peer's kubo repo size and StorageMax, from
// their heartbeats.
func (p *Peer) RepoStats(context.Context) []api.IPFSRepoStat {
	by := map[peer.ID]*api.IPFSRepoStat{}
	get := func(pid peer.ID) *api.IPFSRepoStat {
		if by[pid] == nil {
			by[pid] = &api.IPFSRepoStat{}
		}
		return by[pid]
	}
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricRepoSize) {
		get(mt.Peer).RepoSize, _ = strconv.ParseUint(mt.Value, 10, 64)
	}
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricRepoMax) {
		get(mt.Peer).StorageMax, _ = strconv.ParseUint(mt.Value, 10, 64)
	}
	out := make([]api.IPFSRepoStat, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	return out
}

// fullPeers are the peers whose valid metrics say they are full.
func (p *Peer) fullPeers() map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricFull) {
		if mt.Value == "true" {
			out[mt.Peer] = true
		}
	}
	return out
}

// noteFull logs when this peer becomes full or has room again, and while
// it is full runs kubo's garbage collection (at most once a minute) so
// that the pins moved away free their space.
func (p *Peer) noteFull(full bool, st api.IPFSRepoStat) {
	p.fullMu.Lock()
	defer p.fullMu.Unlock()
	if full != p.full {
		if full {
			logger.Warnf("full: kubo holds %d of %d bytes (threshold %.0f%%): taking no new pins and asking for some to move", st.RepoSize, st.StorageMax, 100*p.cfg.Allocate.FullThreshold)
		} else {
			logger.Infof("no longer full: kubo holds %d of %d bytes", st.RepoSize, st.StorageMax)
		}
		p.full = full
	}
	if !full || !p.cfg.Allocate.GCWhenFull || p.gcRunning || time.Since(p.lastGC) < time.Minute {
		return
	}
	p.gcRunning, p.lastGC = true, time.Now()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.lifetime, 10*time.Minute)
		defer cancel()
		if err := p.ipfs.RepoGC(ctx, nil); err != nil {
			logger.Warnf("kubo repo gc while full: %s", err)
		}
		p.fullMu.Lock()
		p.gcRunning = false
		p.fullMu.Unlock()
	}()
}

// expirePass removes the expired pins this peer is in charge of. It walks
// the pinset only when a pin may have expired since the last walk
// (repair.Watch).
func (p *Peer) expirePass(ctx context.Context) (int, error) {
	now := time.Now()
	if !p.watch.ExpiryDue(now) {
		return 0, nil
	}
	p.watch.Begin(now)
	e := repair.NewExpiry(now, p.host.ID(), p.liveTrusted())
	if err := p.eachPin(ctx, e.Consider); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range e.Remove {
		if err := p.state.Rm(ctx, c); err != nil && !errors.Is(err, crdtstate.ErrNotFound) {
			return n, err
		}
		n++
	}
	p.watch.ExpiryWalked(time.Now(), e.Soonest)
	return n, nil
}

// eachPin calls fn for every pin of the pinset.
func (p *Peer) eachPin(ctx context.Context, fn func(api.Pin)) error {
	return p.Pins(ctx, func(pin api.Pin) error { fn(pin); return nil })
}
