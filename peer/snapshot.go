package peer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/internal/countio"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/p2p"
)

// p2p.Snapshot gives a peer that starts with an empty pinset a
// snapshot of the state (ADR 5): it loads it with blind writes, then syncs
// only the deltas newer than it, instead of merging the whole history.
//
// The asking peer sends one frame, the cluster name. The answer is one
// frame with a reason for refusing ("" to go on); then the server's write
// key and that key's endorsement of the server's peer ID (only peers that
// hold a write key serve snapshots: a writer could have written anything
// in it anyway, and the libp2p connection proves the peer ID); then the
// snapshot stream of crdtstate.WriteSnapshot. Its Idle is generous: the
// server reads every delta block (to check the DAG is consistent) before
// it sends the first byte of data.
const (
	// snapshotQuiet is how long a new peer whose every contact is a
	// follower connected to no writer waits for another peer before it
	// stops asking for a snapshot.
	snapshotQuiet = 5 * time.Second
)

// idleStream refreshes the stream's deadline before every read and write,
// so a long transfer may take as long as it needs but a stalled one ends.
type idleStream struct{ network.Stream }

func (s idleStream) Read(b []byte) (int, error) {
	s.SetReadDeadline(time.Now().Add(p2p.Snapshot.Idle))
	return s.Stream.Read(b)
}

func (s idleStream) Write(b []byte) (int, error) {
	s.SetWriteDeadline(time.Now().Add(p2p.Snapshot.Idle))
	return s.Stream.Write(b)
}

// snapshotBusy answers a snapshot request beyond p2p.Snapshot.Concurrent.
func snapshotBusy(s network.Stream) {
	defer s.Close()
	if _, err := frame.Read(bufio.NewReader(s), uint64(p2p.Snapshot.MaxRequest)); err != nil {
		s.Reset()
		return
	}
	frame.Write(s, []byte("this peer is busy serving other snapshots"))
}

func (p *Peer) serveSnapshot(s network.Stream) {
	defer s.Close()
	st := idleStream{s}
	cluster, err := frame.Read(bufio.NewReader(st), uint64(p2p.Snapshot.MaxRequest))
	if err != nil {
		s.Reset()
		return
	}
	refuse := func(reason string) { frame.Write(st, []byte(reason)) }
	switch {
	case string(cluster) != p.cfg.Cluster.Name:
		refuse(fmt.Sprintf("this peer is in cluster %q, not %q", p.cfg.Cluster.Name, cluster))
		return
	case p.writeKey == nil:
		refuse("this peer holds no write key: ask a writer")
		// Then where the writers it is connected to are, so that a new
		// peer that knows only followers finds one, or, told there is
		// none, stops waiting and syncs through the DAG.
		hint, _ := json.Marshal(p.connectedWriters())
		frame.Write(st, hint)
		return
	}
	frame.Write(st, nil)
	p.writeWriterProof(st)
	began := time.Now()
	sent, err := p.state.WriteSnapshot(p.lifetime, st)
	if err != nil {
		logger.Warnf("snapshot for %s: %s", s.Conn().RemotePeer(), err)
		s.Reset()
		return
	}
	logger.Infof("snapshot for %s: %d blocks, %d entries, %.1f MiB in %s", s.Conn().RemotePeer(),
		sent.Blocks, sent.Pairs, float64(sent.Bytes)/(1<<20), time.Since(began).Round(time.Millisecond))
}

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

// snapshotRefusal is a peer's answer that it gives no snapshot: reason,
// and, from a follower, the writers it is connected to (follower is false
// for an older peer or one that did not say).
type snapshotRefusal struct {
	reason   string
	follower bool
	writers  []ma.Multiaddr
}

func (r *snapshotRefusal) Error() string { return r.reason }

// fetchSnapshot asks pid for a snapshot and loads it into the (empty)
// datastore.
func (p *Peer) fetchSnapshot(ctx context.Context, pid peer.ID, stateNS, blocksNS string) (crdtstate.SnapshotStats, error) {
	var none crdtstate.SnapshotStats
	s, err := p.node.Host.NewStream(ctx, pid, p2p.Snapshot.ID)
	if err != nil {
		return none, err
	}
	defer s.Close()
	st := idleStream{s}
	if err := frame.Write(st, []byte(p.cfg.Cluster.Name)); err != nil {
		s.Reset()
		return none, err
	}
	s.CloseWrite()
	counter := &countio.Reader{R: st}
	r := bufio.NewReaderSize(counter, 256<<10)
	reason, err := frame.Read(r, 1024)
	if err != nil {
		s.Reset()
		return none, err
	}
	if len(reason) > 0 {
		refusal := &snapshotRefusal{reason: string(reason)}
		if hint, err := frame.Read(r, 64<<10); err == nil {
			var addrs []string
			if json.Unmarshal(hint, &addrs) == nil {
				refusal.follower = true
				for _, a := range addrs {
					if m, err := ma.NewMultiaddr(a); err == nil {
						refusal.writers = append(refusal.writers, m)
					}
				}
			}
		}
		return none, refusal
	}
	if err := p.readWriterProof(r, pid); err != nil {
		s.Reset()
		return none, err
	}
	// From here on the REST API says how much has arrived.
	p.starting.Store(&startPhase{from: pid, received: &counter.Count})
	loaded, err := crdtstate.LoadSnapshot(ctx, p.store, stateNS, blocksNS, r)
	if err != nil {
		s.Reset()
	}
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
				var refusal *snapshotRefusal
				if errors.As(err, &refusal) && refusal.follower {
					if len(refusal.writers) > 0 {
						noWriter = false
						logger.Infof("%s is connected to writers: asking them", pid)
						p.dialOnce(ctx, refusal.writers)
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
