package peer

import (
	"context"
	"fmt"
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/membership"
	"github.com/pinring/pinring/trust"
)

// announcePeers runs this peer's announcements on the peers topic (who it
// is, whom it is connected to) and records what the others announce.
// Seeing a peer makes this peer's kubo connect to that peer's kubo, so
// content flows between them.
func (p *Peer) announcePeers(ctx context.Context, topic *pubsub.Topic, interval time.Duration) {
	a := membership.Announcements{Topic: topic, Self: p.host.ID(), Interval: interval, Heard: p.sawPeer,
		Me: func(ctx context.Context) api.ID {
			me := p.ID(ctx)
			me.ClusterPeersAddresses = nil // keep announcements small
			membership.Fit(&me)            // within what the others take
			me.ConnectedTo = p.connectedTo()
			me.IPFSConnectedTo = p.kuboLinks(ctx)
			return me
		}}
	p.wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			logger.Errorf("peers topic: %s", err)
		}
	})
}

func (p *Peer) sawPeer(ctx context.Context, id api.ID) {
	writer := p.checkEndorsement(id)
	isNew, dial := p.peers.Saw(id, writer, time.Now(), time.Minute)
	// Only members are dialled, by this peer and its kubo: a stranger's
	// announcement (a fresh key, addresses of its choosing) costs a
	// table entry, never a dial loop.
	member := writer || p.admitted.AdmittedOrOpen(id.ID)
	if isNew {
		logger.Infof("cluster peer %s (%s) seen", id.ID, id.Peername)
	}
	if isNew && member {
		// Stay connected to every member, not only the bootstrap ones:
		// the mesh then survives the loss of any one peer.
		p.node.Connect(id.Addresses...)
	}
	if dial && member {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.connectKubo(ctx, id.IPFS)
		}()
	}
}

// checkEndorsement reports whether id proves the peer holds a write key of
// this cluster.
func (p *Peer) checkEndorsement(id api.ID) bool {
	if id.WriteKey == "" {
		return false
	}
	k, err := trust.ParsePublicKey(id.WriteKey)
	if err != nil {
		return false
	}
	return p.keys.CheckEndorsement(p.cfg.Cluster.Name, id.ID.String(), k, id.WriteKeyProof)
}

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

// connectKubo asks our kubo to connect to another peer's kubo.
func (p *Peer) connectKubo(ctx context.Context, other api.IPFSID) {
	if mine := p.ipfsIDCached(); mine.ID == other.ID {
		return // a shared kubo
	}
	suffix, err := ma.NewMultiaddr("/p2p/" + other.ID.String())
	if err != nil {
		return
	}
	var addrs []ma.Multiaddr
	for _, a := range other.Addresses {
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			addrs = append(addrs, a)
		} else {
			addrs = append(addrs, a.Encapsulate(suffix))
		}
	}
	if len(addrs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.SwarmConnect(cctx, addrs...); err != nil {
		logger.Debugf("kubo swarm connect to %s: %s", other.ID, err)
	}
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
		id.Connected = p.node.Host.Network().Connectedness(id.ID) == network.Connected
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

// connectedTo lists the cluster peers this peer has a connection to.
func (p *Peer) connectedTo() []peer.ID {
	var out []peer.ID
	for _, pid := range p.peers.IDs() {
		if p.node.Host.Network().Connectedness(pid) == network.Connected {
			out = append(out, pid)
		}
	}
	return out
}

// Graph implements restapi.Backend: this peer's connections and those
// every other peer last announced, and each peer's kubo.
func (p *Peer) Graph(ctx context.Context) api.Graph {
	g := api.Graph{ClusterID: p.host.ID(), IDToPeername: map[string]string{},
		ClusterLinks: map[string][]peer.ID{}, ClusterTrustLinks: map[string]bool{},
		ClusterToIPFS: map[string]peer.ID{}, IPFSLinks: map[string][]peer.ID{}}
	self := p.ID(ctx)
	g.IDToPeername[self.ID.String()] = self.Peername
	g.ClusterLinks[self.ID.String()] = p.connectedTo()
	g.ClusterTrustLinks[self.ID.String()] = p.writeKey != nil
	if self.IPFS.ID != "" {
		g.ClusterToIPFS[self.ID.String()] = self.IPFS.ID
		g.IPFSLinks[self.IPFS.ID.String()] = orEmpty(p.kuboLinks(ctx))
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

// kuboLinks are the other cluster peers' kubos this peer's kubo is
// connected to (nil when kubo does not answer).
func (p *Peer) kuboLinks(ctx context.Context) []peer.ID {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	swarm, err := p.ipfs.SwarmPeers(ctx)
	if err != nil {
		return nil
	}
	kubos := map[peer.ID]bool{}
	for _, e := range p.peers.Entries() {
		if e.ID.IPFS.ID != "" {
			kubos[e.ID.IPFS.ID] = true
		}
	}
	var out []peer.ID
	for _, id := range swarm {
		if kubos[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // kubo lists a peer once a connection
}
