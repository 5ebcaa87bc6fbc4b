package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

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

// repairCluster is the peer as the repair loop sees it.
type repairCluster struct{ p *Peer }

func (r repairCluster) Self() peer.ID { return r.p.host.ID() }
func (r repairCluster) Pins(ctx context.Context, fn func(api.Pin) error) error {
	return r.p.Pins(ctx, fn)
}
func (r repairCluster) Live() []peer.ID { return r.p.liveTrusted() }
func (r repairCluster) Dead() map[peer.ID]bool {
	return r.p.monitor.Dead(r.p.cfg.Repair.Grace.D())
}
func (r repairCluster) NextDeath() (time.Time, bool) {
	return r.p.monitor.NextDeath(r.p.cfg.Repair.Grace.D())
}
func (r repairCluster) Full() map[peer.ID]bool { return r.p.fullPeers() }
func (r repairCluster) Room() []peer.ID {
	var out []peer.ID
	for _, c := range r.p.candidates() {
		if c.HasRoom() {
			out = append(out, c.Peer)
		}
	}
	return out
}
func (r repairCluster) Allocate(pin *api.Pin, keep []peer.ID) ([]peer.ID, error) {
	return r.p.allocate(pin, keep)
}
func (r repairCluster) Write(ctx context.Context, pin *api.Pin) error { return r.p.write(ctx, pin) }
func (r repairCluster) Remove(ctx context.Context, c api.Cid) error {
	if err := r.p.state.Rm(ctx, c); err != nil && !errors.Is(err, crdtstate.ErrNotFound) {
		return err
	}
	return nil
}
func (r repairCluster) RepairErasure(ctx context.Context, dead map[peer.ID]bool) {
	res, err := r.p.ecRepair(ctx, nil, func(a peer.ID) bool { return dead[a] })
	if err != nil && ctx.Err() == nil {
		logger.Warnf("erasure repair: %s", err)
	}
	for _, x := range res {
		if x.Error != "" {
			logger.Warnf("erasure repair of %s: %s", x.Cid, x.Error)
		}
	}
}
