package peer

import (
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// startPhase is what a peer is doing while New runs: the REST API opens
// at once and answers every request (but /version and the dashboard)
// with 503 and this, so that a peer loading a large snapshot says so
// instead of refusing connections.
type startPhase struct {
	what string
	// from is the peer a snapshot is being loaded from ("" for none), and
	// received how many of its bytes arrived so far.
	from     peer.ID
	received *atomic.Int64
}

func (p *Peer) setStarting(what string) *startPhase {
	ph := &startPhase{what: what}
	p.starting.Store(ph)
	return ph
}

// startingMessage is "" once the peer is ready.
func (p *Peer) startingMessage() string {
	ph := p.starting.Load()
	if ph == nil {
		return ""
	}
	if ph.from != "" {
		return fmt.Sprintf("the peer is starting: loading a snapshot of the pinset from %s (%.1f MiB so far); try again in a moment",
			ph.from, float64(ph.received.Load())/(1<<20))
	}
	return "the peer is starting: " + ph.what + "; try again in a moment"
}
