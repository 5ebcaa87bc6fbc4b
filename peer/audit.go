package peer

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/p2p"
)

// auditDeadline is how long a peer has to answer an audit: reading a few
// blocks from its own kubo takes milliseconds; fetching a missing one
// from the network, on demand, usually takes longer (docs/adr/0008).
const auditDeadline = 10 * time.Second

// prove answers an audit from this peer's kubo's own blockstore.
func (p *Peer) prove(ctx context.Context, ch audit.Challenge) ([][]byte, error) {
	return audit.Prove(ch, func(c cid.Cid) ([]byte, error) {
		return p.ipfs.BlockGetLocal(ctx, c, audit.MaxBlock)
	})
}

// Audit implements restapi.Backend: it challenges the peers pin c is
// allocated to (every peer heard, for a pin on every peer), or only pid.
func (p *Peer) Audit(ctx context.Context, c api.Cid, pid peer.ID) ([]api.AuditResult, error) {
	if err := p.checkWrite(); err != nil {
		return nil, err
	}
	pin, err := p.PinGet(ctx, c)
	if err != nil {
		return nil, err
	}
	targets := pin.Allocations
	if len(targets) == 0 {
		targets = append([]peer.ID{p.host.ID()}, p.peers.IDs()...)
	}
	if pid != "" {
		if !slices.Contains(targets, pid) {
			return nil, fmt.Errorf("%w: %s is not allocated to %s", api.ErrBadRequest, c, pid)
		}
		targets = []peer.ID{pid}
	}
	out := make([]api.AuditResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			ch := audit.Challenge{Root: c.Cid}
			rand.Read(ch.Nonce[:])
			var res p2p.AuditResult
			if t == p.host.ID() {
				sent := time.Now()
				blocks, err := p.prove(ctx, ch)
				if err == nil {
					err = audit.Verify(ch, blocks, sent, time.Now(), auditDeadline)
				}
				res = p2p.AuditResult{Blocks: len(blocks), Took: time.Since(sent), Err: err}
				for _, b := range blocks {
					res.Bytes += len(b)
				}
			} else {
				res = p2p.AskAudit(ctx, p.node.Host, writerProof{p}, t, ch, auditDeadline)
			}
			r := api.AuditResult{Cid: c, Peer: t, Peername: p.peernameOf(t), OK: res.Err == nil,
				Blocks: res.Blocks, Bytes: res.Bytes, TookMs: res.Took.Milliseconds()}
			if t == p.host.ID() {
				r.Peername = p.cfg.Cluster.Peername
			}
			if res.Err != nil {
				r.Error = res.Err.Error()
			}
			out[i] = r
		})
	}
	wg.Wait()
	return out, nil
}
