package peer

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/repair"
)

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
		wg.Go(func() { out[i] = p.auditPeer(ctx, c, t) })
	}
	wg.Wait()
	return out, nil
}

// auditPeer challenges t (this peer: proves locally) to prove it holds c,
// and records the verdict.
func (p *Peer) auditPeer(ctx context.Context, c api.Cid, t peer.ID) api.AuditResult {
	ch := audit.Challenge{Root: c.Cid}
	rand.Read(ch.Nonce[:])
	deadline := p.cfg.Audit.Deadline.D()
	var res p2p.AuditResult
	if t == p.host.ID() {
		sent := time.Now()
		blocks, err := p.prove(ctx, ch)
		if err == nil {
			err = audit.Verify(ch, blocks, sent, time.Now(), deadline)
		}
		res = p2p.AuditResult{Blocks: len(blocks), Took: time.Since(sent), Err: err}
		for _, b := range blocks {
			res.Bytes += len(b)
		}
	} else {
		res = p2p.AskAudit(ctx, p.node.Host, writerProof{p}, t, ch, deadline)
	}
	if ctx.Err() == nil {
		p.verdicts.Add(t, time.Now(), res.Err)
	}
	r := api.AuditResult{Cid: c, Peer: t, Peername: p.peernameOf(t), OK: res.Err == nil,
		Blocks: res.Blocks, Bytes: res.Bytes, TookMs: res.Took.Milliseconds()}
	if t == p.host.ID() {
		r.Peername = p.cfg.Cluster.Peername
	}
	if res.Err != nil {
		r.Error = res.Err.Error()
		logger.Warnf("audit of %s (%s) for %s failed: %s", t, r.Peername, c, res.Err)
	}
	return r
}

// auditRounds runs a round at a random point of every audit.interval,
// until ctx ends (writers only).
func (p *Peer) auditRounds(ctx context.Context) {
	iv := p.cfg.Audit.Interval.D()
	if iv <= 0 {
		return
	}
	for {
		at := time.Duration(mrand.Int64N(int64(iv)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(at):
		}
		p.auditRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(iv - at):
		}
	}
}

// auditRound audits a sample of the pins with allocations (shards
// included) this writer is in charge of, at every peer each is allocated
// to but this one. It returns how many audits it made.
func (p *Peer) auditRound(ctx context.Context) int {
	self, live := p.host.ID(), p.liveTrusted()
	s := audit.Sampler[api.Pin]{N: p.cfg.Audit.Sample}
	err := p.Pins(ctx, func(pin api.Pin) error {
		if len(pin.Allocations) > 0 && repair.InCharge(self, pin.Cid.Key(), live) {
			s.Offer(pin)
		}
		return nil
	})
	if err != nil {
		return 0
	}
	n := 0
	for _, pin := range s.Items {
		for _, a := range pin.Allocations {
			if a != self && ctx.Err() == nil {
				p.auditPeer(ctx, pin.Cid, a)
				n++
			}
		}
	}
	return n
}
