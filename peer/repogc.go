package peer

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
)

// RepoGC implements restapi.Backend: this peer's kubo garbage collection,
// and with local false every other cluster peer's (asked in parallel;
// those that cannot be reached or refuse say so in their entry).
func (p *Peer) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	var others []peer.ID
	if !local {
		if p.writeKey == nil {
			return api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{}}, fmt.Errorf("%w: only a peer holding a write key of cluster %q can ask other peers to collect garbage; ask with local=true (cluster-ctl ipfs gc --local) for this peer's kubo",
				api.ErrForbidden, p.cfg.Cluster.Name)
		}
		others = p.otherPeers()
	}
	return p2p.GatherRepoGC(ctx, p.node.Host, p.proof, others, p.peers.Peername, p.localRepoGC), nil
}

// localRepoGC runs this peer's kubo's garbage collection.
func (p *Peer) localRepoGC(ctx context.Context) api.RepoGC {
	r := api.RepoGC{Peer: p.host.ID(), Peername: p.cfg.Cluster.Peername, Keys: []api.IPFSRepoGC{}}
	start := time.Now()
	err := p.ipfs.RepoGC(ctx, func(c api.Cid) { r.Keys = append(r.Keys, api.IPFSRepoGC{Key: c}) })
	if err != nil {
		r.Error = err.Error()
	}
	// kubo collects only when no pin is in progress: a slow one says so.
	logger.Infof("kubo garbage collection: %d blocks removed in %s", len(r.Keys), time.Since(start).Round(time.Millisecond))
	return r
}

// Bandwidth implements restapi.Backend: this peer's libp2p traffic by
// protocol since it started.
func (p *Peer) Bandwidth(context.Context) map[string]api.Bandwidth {
	out := map[string]api.Bandwidth{}
	if p.node.Bandwidth == nil {
		return out
	}
	for proto, st := range p.node.Bandwidth.GetBandwidthByProtocol() {
		out[string(proto)] = api.Bandwidth{TotalIn: st.TotalIn, TotalOut: st.TotalOut, RateIn: st.RateIn, RateOut: st.RateOut}
	}
	return out
}
