package peer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/allocate"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/capacity"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/pubsubmon"
)

// collectMetrics is this peer's heartbeat content besides ping and tags,
// within an interval.
func (p *Peer) collectMetrics(ctx context.Context) []api.Metric {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Monitor.Interval.D())
	defer cancel()
	out := p.own.Collect(ctx)
	if r := p.run.Load(); r != nil {
		out = append(out, api.Metric{Name: pubsubmon.MetricEpoch, Value: strconv.FormatUint(r.cur.N(), 10)})
	}
	return out
}

// candidates are the peers that may take replicas now (capacity.Ledger).
func (p *Peer) candidates() []allocate.Candidate { return p.ledger.Candidates(time.Now(), p.monitor) }

// withRoom are the candidates that can take a pin now.
func (p *Peer) withRoom() []peer.ID {
	var out []peer.ID
	for _, c := range p.candidates() {
		if c.HasRoom() {
			out = append(out, c.Peer)
		}
	}
	return out
}

// allocate picks the peers for a pin (nil: every peer), never one of
// avoid.
func (p *Peer) allocate(pin *api.Pin, current []peer.ID, avoid ...peer.ID) ([]peer.ID, error) {
	if pin.ReplicationFactorMax == -1 {
		return nil, nil
	}
	cs := p.candidates()
	if len(avoid) > 0 {
		cs = slices.DeleteFunc(cs, func(c allocate.Candidate) bool { return slices.Contains(avoid, c.Peer) })
	}
	allocs, err := allocate.Allocate(allocate.Request{
		Min: pin.ReplicationFactorMin, Max: pin.ReplicationFactorMax,
		Current: current, User: pin.UserAllocations,
		Candidates: cs, Policy: allocate.Policy{SpreadBy: p.cfg.Allocate.SpreadBy},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", api.ErrBadRequest, pin.Cid, err)
	}
	p.ledger.Allocated(time.Now(), allocs, current)
	return allocs, nil
}

// liveTrusted lists the peers that may repair: this one and every peer
// whose ping is valid and that proved it holds a write key.
func (p *Peer) liveTrusted() []peer.ID {
	out := slices.DeleteFunc(p.livePeers(), func(pid peer.ID) bool { return !p.isWriter(pid) })
	if !slices.Contains(out, p.host.ID()) {
		out = append(out, p.host.ID())
	}
	return out
}

// livePeers are the peers whose ping is valid.
func (p *Peer) livePeers() []peer.ID {
	var out []peer.ID
	for _, mt := range p.monitor.LatestValid(pubsubmon.MetricPing) {
		out = append(out, mt.Peer)
	}
	return out
}

// RepoStats are every live peer's kubo repo size and StorageMax, from
// their heartbeats.
func (p *Peer) RepoStats(context.Context) []api.IPFSRepoStat { return capacity.RepoStats(p.monitor) }

// fullPeers are the peers whose valid metrics say they are full.
func (p *Peer) fullPeers() map[peer.ID]bool { return capacity.Full(p.monitor) }

// repairCluster is the peer as the repair loop sees it.
type repairCluster struct{ p *Peer }

func (r repairCluster) Self() peer.ID { return r.p.host.ID() }
func (r repairCluster) Pins(ctx context.Context, fn func(api.Pin) error) error {
	return r.p.Pins(ctx, fn)
}
func (r repairCluster) Live() []peer.ID { return r.p.liveTrusted() }

// Dead counts revoked peers with the dead: their pins move the same way.
func (r repairCluster) Dead() map[peer.ID]bool {
	dead := r.p.monitor.Dead(r.p.cfg.Repair.Grace.D())
	maps.Copy(dead, r.p.admitted.Revoked())
	return dead
}
func (r repairCluster) Unheard() func(peer.ID) bool {
	return r.p.monitor.Unheard(r.p.cfg.Repair.Grace.D())
}
func (r repairCluster) NextDeath() (time.Time, bool) {
	return r.p.monitor.NextDeath(r.p.cfg.Repair.Grace.D())
}
func (r repairCluster) Full() map[peer.ID]bool { return r.p.fullPeers() }
func (r repairCluster) Room() []peer.ID        { return r.p.withRoom() }
func (r repairCluster) Allocate(pin *api.Pin, keep, avoid []peer.ID) ([]peer.ID, error) {
	return r.p.allocate(pin, keep, avoid...)
}

// Failed are the replicas this peer's audits found failing
// audit.fail_rounds times in a row.
func (r repairCluster) Failed() map[string][]peer.ID                  { return r.p.auditor.Lost() }
func (r repairCluster) Write(ctx context.Context, pin *api.Pin) error { return r.p.Write(ctx, pin) }
func (r repairCluster) Remove(ctx context.Context, c api.Cid) error {
	if err := pinset(r).Rm(ctx, c); err != nil && !errors.Is(err, crdtstate.ErrNotFound) {
		return err
	}
	return nil
}
func (r repairCluster) RepairErasure(ctx context.Context, lost func(peer.ID) bool) bool {
	res, err := r.p.ecRepair(ctx, nil, lost)
	if err != nil && ctx.Err() == nil {
		logger.Warnf("erasure repair (tried again at the next pass): %s", err)
	}
	unfinished := err != nil
	for _, x := range res {
		if x.Error != "" {
			logger.Warnf("erasure repair of %s (tried again at the next pass): %s", x.Cid, x.Error)
			unfinished = true
		}
	}
	return unfinished
}
