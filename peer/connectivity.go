package peer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/peerconfig"
)

// mdnsService is the mDNS service name of a cluster: its name and write
// keys, hashed, so that two clusters on one LAN do not dial each other.
func mdnsService(cfg peerconfig.Config) string {
	keys := slices.Clone(cfg.Trust.WriteKeys)
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(cfg.Cluster.Name + "\n" + strings.Join(keys, "\n")))
	return "_pr-" + hex.EncodeToString(sum[:5]) + "._udp"
}

// PeerstoreFile remembers the addresses of the cluster peers seen, one /p2p
// multiaddr a line, so that a restarted peer finds the cluster again even
// when its bootstrap peers are gone.
const PeerstoreFile = "peerstore"

// savePeerstore remembers the peers seen in dir's PeerstoreFile.
func (p *Peer) savePeerstore() error {
	return p.peers.Remember(filepath.Join(p.dir, PeerstoreFile), maxRemembered)
}

// maxRemembered bounds the peerstore file: the most recently seen peers.
const maxRemembered = 200

// connectedPeers counts the cluster peers this peer has a connection to.
func (p *Peer) connectedPeers() int {
	return len(p.connectedTo())
}

// watchConnectivity remembers the peers seen (peerstore file) and says in
// the log when this peer finds itself alone and when it has company again.
// It runs every interval.
func (p *Peer) watchConnectivity(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			if err := p.savePeerstore(); err != nil {
				logger.Warnf("remembering cluster peers: %s", err)
			}
			return
		case <-tick.C:
		}
		if err := p.savePeerstore(); err != nil {
			logger.Warnf("remembering cluster peers: %s", err)
		}
		n := p.connectedPeers()
		trying := len(p.node.Keeping())
		p.aloneMu.Lock()
		wasAlone := p.alone
		// Alone: nobody connected, while there is someone to reach (or
		// after a start-up period, for a peer that knows nobody).
		p.alone = n == 0 && (trying > 0 || time.Since(started) > 3*interval)
		p.aloneMu.Unlock()
		switch {
		case p.alone && !wasAlone:
			logger.Warnf("alone: no cluster peer is connected; still trying %d known peers (bootstrap, remembered, mDNS); writes are kept and will sync", trying)
		case !p.alone && wasAlone:
			logger.Infof("connected to the cluster again: %d peers", n)
		}
	}
}

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
	if n, latest, file := p.state.Quarantine(); n > 0 {
		last := latest[len(latest)-1]
		h.Pinset = api.ComponentHealth{Error: fmt.Sprintf("%d pinset changes could not be stored and were quarantined in %s; the last (%s): %s",
			n, file, last.Key, last.Error)}
	}
	_, height, _ := p.state.Stats(ctx)
	h.Store = api.StoreHealth{Bytes: p.state.StoreBytes(), Height: height, Pins: p.tracker.Total()}
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
	p.aloneMu.Lock()
	h.Alone = p.alone
	p.aloneMu.Unlock()
	return h
}
