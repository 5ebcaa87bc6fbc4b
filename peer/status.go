package peer

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/status"
)

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

// statuses is the cluster-wide status as this peer asks it.
func (p *Peer) statuses() status.Global {
	return status.Global{Self: p.host.ID(), Others: p.otherPeers, Peername: p.peers.Peername,
		Local: func(ctx context.Context, c api.Cid) api.PinInfo { return p.withIdentity(p.tracker.Status(ctx, c)) },
		LocalAll: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return p.tracker.StatusAll(ctx, nil, func(pi api.PinInfo) error { return fn(p.withIdentity(pi)) })
		},
		Ask: func(ctx context.Context, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error {
			return p2p.AskStatus(ctx, p.node.Host, pid, c, fn)
		},
		Summary: status.FromHeartbeats(p.monitor)}
}
