package peer

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/p2p"
)

// snapshotQuiet is how long a new peer whose every contact is a follower
// connected to no writer waits for another peer before it stops asking for
// a snapshot (p2p.Snapshot).
const snapshotQuiet = 5 * time.Second

// syncSnapshot tries, for up to wait, every connected peer in turn for a
// snapshot, and returns once one is loaded or the time is up (the DAG
// sync then does the work).
func (p *Peer) syncSnapshot(ctx context.Context, wait time.Duration) {
	began := time.Now()
	logger.Infof("the pinset is empty: asking the cluster's peers for a snapshot (for up to %s)", wait)
	asking := fmt.Sprintf("asking the cluster's peers for a snapshot of the pinset, empty here (for up to %s, then it syncs through the DAG)", wait)
	var got crdtstate.SnapshotStats
	f := p2p.SnapshotFetch{Cluster: p.cfg.Cluster.Name, Proof: p.proof, Wait: wait, Quiet: snapshotQuiet,
		Asking: func() { p.setStarting(asking) },
		Load: func(ctx context.Context, pid peer.ID, r io.Reader, received *atomic.Int64) error {
			// From here on the REST API says how much has arrived.
			p.starting.Store(&startPhase{from: pid, received: received})
			var err error
			got, err = p.loadSnapshot(ctx, r)
			return err
		}}
	if pid, ok := f.Run(ctx, p.node.Host); ok {
		p.snapshot = &got
		logger.Infof("loaded a snapshot from %s: %d heads (height %d), %d blocks, %d entries, %.1f MiB in %s",
			pid, len(got.Heads), got.Height, got.Blocks, got.Pairs, float64(got.Bytes)/(1<<20), time.Since(began).Round(time.Millisecond))
	}
}
