package peer

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/membership"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/pintracker"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/repair"
)

// trackerIPFS is the kubo the tracker pins with: this peer's, except in
// the dishonest peer the audit tests build (liar.go, -tags pinring_liar).
var trackerIPFS = func(k pintracker.IPFS) pintracker.IPFS { return k }

// newAuditor wires the audits (audit.Auditor) to this peer: its kubo
// proves, libp2p asks, the live writers' rendezvous order decides who
// audits a pin, and a suspension is a revocation.
func (p *Peer) newAuditor() *audit.Auditor {
	self := p.host.ID()
	return audit.NewAuditor(p.cfg.Audit, audit.Deps{
		Self:  self,
		Prove: p.prove,
		Ask: func(ctx context.Context, pid peer.ID, ch audit.Challenge, deadline time.Duration) audit.Outcome {
			return p2p.AskAudit(ctx, p.node.Host, p.proof, pid, ch, deadline)
		},
		Pins:     p.Pins,
		InCharge: func(key string) bool { return repair.InCharge(self, key, p.liveTrusted()) },
		Suspend: func(ctx context.Context, pid peer.ID, note string) error {
			_, err := p.SetAdmission(ctx, pid, true, note)
			return err
		},
		Exempt: func(pid peer.ID) bool {
			return p.isWriter(pid) || p.admitted.Of(pid) == api.AdmissionRevoked
		},
		Live: p.livePeers,
		HeardSince: func(pid peer.ID, t time.Time) bool {
			for _, mt := range p.monitor.Latest(pubsubmon.MetricPing) {
				if mt.Peer == pid {
					return mt.ReceivedAt > t.UnixNano()
				}
			}
			return false
		},
		Settle:     p.cfg.Monitor.Interval.D(),
		AskSlots:   p2p.Audit.PerPeer,
		Lost:       func() { p.repairs.Kick() },
		Unverified: p.admitted.Unverified,
		Passed:     p.admitted.Verify,
		Peername: func(pid peer.ID) string {
			if pid == self {
				return p.cfg.Cluster.Peername
			}
			return p.peernameOf(pid)
		},
	}, membership.DefaultMax)
}

// prove answers an audit from this peer's kubo's own blockstore. Blocks
// missing while the tracker does not claim the pin (queued, pinning, or
// failed and to be tried again) are "still fetching" (audit.ErrFetching):
// the auditor does not count that as a failure until audit.fetch_limit,
// and never against the peer.
func (p *Peer) prove(ctx context.Context, ch audit.Challenge) ([][]byte, error) {
	blocks, err := audit.Prove(ch, func(c cid.Cid) ([]byte, error) {
		return p.ipfs.BlockGetLocal(ctx, c, audit.MaxBlock)
	})
	if err != nil {
		switch st := p.tracker.Status(ctx, api.NewCid(ch.Root)); st.Status {
		case api.StatusPinQueued, api.StatusPinning, api.StatusPinError:
			return nil, fmt.Errorf("%w (%s since %s): %w", audit.ErrFetching, st.Status, st.TS.UTC().Format(time.RFC3339), err)
		}
	}
	return blocks, err
}

// Audit implements restapi.Backend: it challenges the peers pin c is
// allocated to (every peer heard, for a pin on every peer), or only pid.
func (p *Peer) Audit(ctx context.Context, c api.Cid, pid peer.ID) ([]api.AuditResult, error) {
	if err := p.CheckWrite(); err != nil {
		return nil, err
	}
	pin, err := p.PinGet(ctx, c)
	if err != nil {
		return nil, err
	}
	return p.auditor.Check(ctx, pin, p.peers.IDs(), pid)
}
