package peer

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// isWriter reports whether pid is this peer with a write key, or a peer
// whose announcement proved it holds one.
func (p *Peer) isWriter(pid peer.ID) bool {
	if pid == p.host.ID() {
		return p.writeKey != nil
	}
	return p.peers.Writer(pid)
}

// peernameOf is the name pid last announced ("" if it never did).
func (p *Peer) peernameOf(pid peer.ID) string { return p.peers.Peername(pid) }

// peerSeen reports whether pid was heard on the peers topic.
func (p *Peer) peerSeen(pid peer.ID) bool {
	_, ok := p.peers.Get(pid)
	return ok
}

// clusterPeers lists the peers heard from, with their connectedness, and
// this peer first.
func (p *Peer) clusterPeers(ctx context.Context) []api.ID {
	self := p.ID(ctx)
	self.Admission = p.admitted.Of(self.ID)
	out := []api.ID{self}
	entries := p.peers.Entries()
	others := make([]api.ID, 0, len(entries))
	for _, e := range entries {
		id := e.ID
		id.LastSeen = e.LastSeen.UTC()
		id.Connected = p.ring.Connected(id.ID)
		id.Admission = p.admitted.Of(id.ID) // this peer's view, never the announcer's claim
		id.Audit = ""
		if r, ok := p.auditor.Peers.Get(id.ID); ok {
			id.Audit = r.String()
		}
		if n := p.cfg.Audit.UnverifiedCap; n > 0 && id.Audit == "" && p.admitted.Allocatable(id.ID) && p.admitted.Unverified(id.ID) {
			id.Audit = fmt.Sprintf("not verified yet: at most %d pins until it passes an audit", n)
		}
		// Announcements leave the addresses of a peer's own peers out
		// (they would grow with the ring); IPFS Cluster's clients want
		// arrays, never null.
		id.ClusterPeersAddresses = orEmpty(id.ClusterPeersAddresses)
		id.ClusterPeers = orEmpty(id.ClusterPeers)
		id.Addresses = orEmpty(id.Addresses)
		id.IPFS.Addresses = orEmpty(id.IPFS.Addresses)
		others = append(others, id)
	}
	return append(out, others...)
}

// orEmpty is s, or an empty slice where s is nil (JSON [] for null).
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Graph implements restapi.Backend: this peer's connections and those
// every other peer last announced, and each peer's kubo.
func (p *Peer) Graph(ctx context.Context) api.Graph {
	g := api.Graph{ClusterID: p.host.ID(), IDToPeername: map[string]string{},
		ClusterLinks: map[string][]peer.ID{}, ClusterTrustLinks: map[string]bool{},
		ClusterToIPFS: map[string]peer.ID{}, IPFSLinks: map[string][]peer.ID{}}
	self := p.ID(ctx)
	g.IDToPeername[self.ID.String()] = self.Peername
	g.ClusterLinks[self.ID.String()] = p.ring.ConnectedTo()
	g.ClusterTrustLinks[self.ID.String()] = p.writeKey != nil
	if self.IPFS.ID != "" {
		g.ClusterToIPFS[self.ID.String()] = self.IPFS.ID
		g.IPFSLinks[self.IPFS.ID.String()] = orEmpty(p.ring.KuboLinks(ctx))
	}
	for _, e := range p.peers.Entries() {
		pid := e.ID.ID
		g.IDToPeername[pid.String()] = e.ID.Peername
		g.ClusterLinks[pid.String()] = e.ID.ConnectedTo
		g.ClusterTrustLinks[pid.String()] = e.Writer
		if k := e.ID.IPFS.ID; k != "" {
			g.ClusterToIPFS[pid.String()] = k
			g.IPFSLinks[k.String()] = orEmpty(e.ID.IPFSConnectedTo)
		}
	}
	return g
}
