package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
)

// RepoGC implements restapi.Backend: this peer's kubo garbage collection,
// and with local false every other cluster peer's (asked in parallel;
// those that cannot be reached or refuse say so in their entry).
func (p *Peer) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	g := api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	put := func(r api.RepoGC) {
		mu.Lock()
		defer mu.Unlock()
		g.PeerMap[r.Peer.String()] = r
	}
	if !local {
		if p.writeKey == nil {
			return g, fmt.Errorf("%w: only a peer holding a write key of cluster %q can ask other peers to collect garbage; ask with local=true (cluster-ctl ipfs gc --local) for this peer's kubo",
				api.ErrForbidden, p.cfg.Cluster.Name)
		}
		for _, pid := range p.otherPeers() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := p.askRepoGC(ctx, pid)
				if err != nil {
					r = api.RepoGC{Peer: pid, Peername: p.peernameOf(pid), Error: err.Error()}
				}
				put(r)
			}()
		}
	}
	put(p.localRepoGC(ctx))
	wg.Wait()
	return g, nil
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

// askRepoGC asks pid to collect its kubo's garbage and returns its answer.
func (p *Peer) askRepoGC(ctx context.Context, pid peer.ID) (api.RepoGC, error) {
	if p.writeKey == nil {
		return api.RepoGC{}, errors.New("this peer holds no write key")
	}
	return p2p.AskRepoGC(ctx, p.node.Host, p.proof, pid)
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
