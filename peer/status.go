package peer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/status"
)

// statusOne bounds one peer's answer about one CID.
const statusOne = 5 * time.Second

// withIdentity fills in this peer's name and kubo identity.
func (p *Peer) withIdentity(pi api.PinInfo) api.PinInfo {
	id := p.ipfsIDCached()
	pi.PeerName = p.cfg.Cluster.Peername
	pi.IPFS = id.ID
	pi.IPFSAddresses = id.Addresses
	return pi
}

// otherPeers are the cluster peers to ask for their status: every peer
// heard from, except this one.
func (p *Peer) otherPeers() []peer.ID {
	return slices.DeleteFunc(p.peers.IDs(), func(id peer.ID) bool { return id == p.host.ID() })
}

// unreachable is what the status of an allocated peer that did not answer
// looks like.
func unreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	return api.PinInfo{Cid: c, Peer: pid, PinInfoShort: api.PinInfoShort{
		Status: api.StatusClusterError, Error: "peer unreachable: " + err.Error(), TS: time.Now().UTC()}}
}

// globalStatus asks every cluster peer for c's status and merges the
// answers.
func (p *Peer) globalStatus(ctx context.Context, c api.Cid) api.GlobalPinInfo {
	g := p.global(p.tracker.Status(ctx, c))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pid := range p.otherPeers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One answer is small: a peer that has not given it in a few
			// seconds (a link that died without a word) is unreachable.
			sctx, cancel := context.WithTimeout(ctx, statusOne)
			defer cancel()
			var got *api.PinInfo
			err := p2p.AskStatus(sctx, p.node.Host, pid, c, func(pi api.PinInfo) error { got = &pi; return nil })
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got != nil:
				g.Add(*got)
			case err != nil:
				g.Add(p.namedUnreachable(c, pid, err))
			}
		}()
	}
	wg.Wait()
	return g
}

func (p *Peer) namedUnreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	pi := unreachable(c, pid, err)
	pi.PeerName = p.peernameOf(pid)
	return pi
}

// globalStatusAll merges every peer's status stream (this peer's first)
// into one GlobalPinInfo per CID (status.Merge).
func (p *Peer) globalStatusAll(ctx context.Context, filter api.StatusFilter, fn func(api.GlobalPinInfo) error) error {
	sources := []status.Source{{Peer: p.host.ID(), Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
		return p.tracker.StatusAll(ctx, nil, func(pi api.PinInfo) error { return fn(p.withIdentity(pi)) })
	}}}
	for _, pid := range p.otherPeers() {
		sources = append(sources, status.Source{Peer: pid, Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return p2p.AskStatus(ctx, p.node.Host, pid, api.Cid{}, fn)
		}})
	}
	return status.Merge(ctx, sources, filter, p.namedUnreachable, fn)
}
