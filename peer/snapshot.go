package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/p2p"
)

// snapshotQuiet is how long a new peer whose every contact is a follower
// connected to no writer waits for another peer before it stops asking for
// a snapshot (p2p.Snapshot).
const snapshotQuiet = 5 * time.Second

// connectedWriters are the /p2p multiaddrs of the writers this peer is
// connected to now.
func (p *Peer) connectedWriters() []string {
	out := []string{}
	for _, e := range p.peers.Entries() {
		pid := e.ID.ID
		if !e.Writer || p.node.Host.Network().Connectedness(pid) != network.Connected {
			continue
		}
		for _, a := range p.node.Host.Peerstore().Addrs(pid) {
			out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+pid.String())).String())
		}
	}
	return out
}

// dialOnce connects to the peers at addrs, once each and briefly: they are
// what another peer said, not addresses this peer keeps trying (a writer
// among them is kept once its own announcement arrives).
func (p *Peer) dialOnce(ctx context.Context, addrs []ma.Multiaddr) {
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		logger.Infof("writers named by a follower: %s", err)
		return
	}
	for _, ai := range infos {
		if ai.ID == p.node.Host.ID() {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := p.node.Host.Connect(dctx, ai); err != nil {
			logger.Infof("writer %s named by a follower: %s", ai.ID, err)
		}
		cancel()
	}
}

// fetchSnapshot asks pid for a snapshot and loads it into the (empty)
// datastore.
func (p *Peer) fetchSnapshot(ctx context.Context, pid peer.ID, stateNS, blocksNS string) (crdtstate.SnapshotStats, error) {
	var loaded crdtstate.SnapshotStats
	err := p2p.AskSnapshot(ctx, p.node.Host, pid, p.cfg.Cluster.Name, writerProof{p}, func(r io.Reader, received *atomic.Int64) error {
		// From here on the REST API says how much has arrived.
		p.starting.Store(&startPhase{from: pid, received: received})
		var err error
		loaded, err = crdtstate.LoadSnapshot(ctx, p.store, stateNS, blocksNS, r)
		return err
	})
	return loaded, err
}

// syncSnapshot tries, for up to wait, every connected peer in turn for a
// snapshot, and returns once one is loaded or the time is up (the DAG
// sync then does the work).
func (p *Peer) syncSnapshot(ctx context.Context, stateNS, blocksNS string, wait time.Duration) {
	began := time.Now()
	tried := map[peer.ID]bool{}
	logger.Infof("the pinset is empty: asking the cluster's peers for a snapshot (for up to %s)", wait)
	asking := fmt.Sprintf("asking the cluster's peers for a snapshot of the pinset, empty here (for up to %s, then it syncs through the DAG)", wait)
	p.setStarting(asking)
	// noWriter stays true while every peer asked is a follower connected
	// to no writer; then, once no new peer has turned up for
	// snapshotQuiet, waiting longer is pointless.
	noWriter, lastNew := true, time.Now()
	for time.Since(began) < wait && ctx.Err() == nil {
		for _, pid := range p.node.Host.Network().Peers() {
			if tried[pid] {
				continue
			}
			tried[pid] = true
			lastNew = time.Now()
			sctx, cancel := context.WithCancel(ctx)
			got, err := p.fetchSnapshot(sctx, pid, stateNS, blocksNS)
			cancel()
			if err != nil {
				logger.Infof("no snapshot from %s: %s", pid, err)
				var refusal *p2p.SnapshotRefusal
				if errors.As(err, &refusal) && refusal.Follower {
					if len(refusal.Writers) > 0 {
						noWriter = false
						logger.Infof("%s is connected to writers: asking them", pid)
						p.dialOnce(ctx, refusal.Writers)
					}
				} else {
					noWriter = false
				}
				p.setStarting(asking)
				continue
			}
			p.snapshot = &got
			logger.Infof("loaded a snapshot from %s: %d heads (height %d), %d blocks, %d entries, %.1f MiB in %s",
				pid, len(got.Heads), got.Height, got.Blocks, got.Pairs, float64(got.Bytes)/(1<<20), time.Since(began).Round(time.Millisecond))
			return
		}
		if noWriter && len(tried) > 0 && time.Since(lastNew) >= snapshotQuiet {
			logger.Infof("every peer reached (%d) holds no write key and is connected to no writer: syncing the pinset through the DAG", len(tried))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	logger.Infof("no peer gave a snapshot within %s: syncing the pinset through the DAG", wait)
}
