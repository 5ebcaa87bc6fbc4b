package peer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pinring/pinring/api"
)

// Health implements restapi.Backend: kubo's reachability, and whether this
// peer reaches the cluster, with when each cluster peer was last heard.
func (p *Peer) Health(ctx context.Context) api.Health {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h := api.Health{Healthy: true, Kubo: api.ComponentHealth{OK: true}, Pinset: api.ComponentHealth{OK: true}, Audits: api.ComponentHealth{OK: true}}
	if failing := p.auditor.Failing(); len(failing) > 0 {
		names := make([]string, 0, min(len(failing), 10))
		for _, pid := range failing[:min(len(failing), 10)] {
			names = append(names, fmt.Sprintf("%s (%s)", pid, p.peernameOf(pid)))
		}
		h.Audits = api.ComponentHealth{Error: fmt.Sprintf("%d peers failed their last audit: %s", len(failing), strings.Join(names, ", "))}
	}
	if n, latest, file := p.st().Quarantine(); n > 0 {
		last := latest[len(latest)-1]
		h.Pinset = api.ComponentHealth{Error: fmt.Sprintf("%d pinset changes could not be stored and were quarantined in %s; the last (%s): %s",
			n, file, last.Key, last.Error)}
	}
	_, height, _ := p.st().Stats(ctx)
	run := p.run.Load()
	h.Store = api.StoreHealth{Bytes: p.st().StoreBytes(), Height: height, Pins: p.tracker.Total(), Epoch: run.cur.N(), History: -1, Live: -1}
	if !run.since.IsZero() {
		h.Store.EpochSince = &run.since
	}
	if ns := p.lastRetired.Load(); ns > 0 {
		t := time.Unix(0, ns)
		h.Store.LastDrop = &t
	}
	if hist := p.history.Load(); hist != nil {
		h.Store.History, h.Store.Live = hist.Elements+hist.Tombstones, hist.Live
	}
	if id := p.refreshIPFSID(ctx); id.Error != "" {
		h.Healthy = false
		h.Kubo = api.ComponentHealth{OK: false, Error: fmt.Sprintf("kubo is not reachable: %s", id.Error)}
	}
	for _, id := range p.clusterPeers(ctx)[1:] {
		h.ClusterPeers = append(h.ClusterPeers, api.PeerHealth{ID: id.ID, Peername: id.Peername, Role: id.Role,
			Connected: id.Connected, LastSeen: id.LastSeen, Audit: id.Audit})
		if id.Connected {
			h.ConnectedPeers++
		}
	}
	h.Alone = p.ring.Alone()
	return h
}
