package peer

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/ecfile"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/repair"
)

// ecCluster is the peer as ecfile sees it.
type ecCluster struct{ p *Peer }

var _ ecfile.Cluster = ecCluster{}

func (e ecCluster) Self() peer.ID                                 { return e.p.host.ID() }
func (e ecCluster) Alive(pid peer.ID) bool                        { return e.p.monitor.Alive(pid) }
func (e ecCluster) Write(ctx context.Context, pin *api.Pin) error { return e.p.Write(ctx, pin) }
func (e ecCluster) PinGet(ctx context.Context, c api.Cid) (api.Pin, error) {
	return e.p.PinGet(ctx, c)
}
func (e ecCluster) Cat(ctx context.Context, c api.Cid, holder peer.ID) (io.ReadCloser, error) {
	// Our kubo finds the blocks by asking the kubos it is connected to;
	// the holder's may not be one of them (seen: a repair waiting for
	// ever on a shard).
	if id, ok := e.p.peers.Get(holder); ok && holder != e.p.host.ID() {
		e.p.ring.ConnectKubo(ctx, id.ID.IPFS)
	}
	return e.p.ipfs.Cat(ctx, c)
}
func (e ecCluster) Sink(to []peer.ID) ecfile.Sink { return e.p.sinkFor(to) }

// ShardPeers picks a distinct peer for each of n shards where there are
// enough peers (most free space first), reusing peers round-robin where
// there are not, and avoiding the peers in avoid while others remain.
func (e ecCluster) ShardPeers(n int, avoid []peer.ID) ([]peer.ID, error) {
	cands := e.p.withRoom()
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: no peer can take shards (no valid metrics, or all full)", api.ErrBadRequest)
	}
	probe := api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: len(cands)}}
	order, err := e.p.allocate(&probe, nil)
	if err != nil {
		return nil, err
	}
	fresh := slices.DeleteFunc(slices.Clone(order), func(id peer.ID) bool { return slices.Contains(avoid, id) })
	if len(fresh) == 0 {
		fresh = order
	}
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = fresh[i%len(fresh)]
	}
	return out, nil
}

// ECGet implements restapi.Backend.
func (p *Peer) ECGet(ctx context.Context, c api.Cid, w io.Writer) error {
	return p.ec.Get(ctx, c, w)
}

// ECRepair implements restapi.Backend: it rebuilds the shards of
// erasure-coded files whose peers are not alive (ecfile.Files.Repair). With
// c nil it handles every file this peer is in charge of.
func (p *Peer) ECRepair(ctx context.Context, c *api.Cid) ([]api.ECRepair, error) {
	if err := p.CheckWrite(); err != nil {
		return nil, err
	}
	lost := func(a peer.ID) bool { return a != p.host.ID() && !p.monitor.Alive(a) }
	return p.ecRepair(ctx, c, lost)
}

// ecRepair does ECRepair with lost deciding which peers' shards are gone.
func (p *Peer) ecRepair(ctx context.Context, c *api.Cid, lost func(peer.ID) bool) ([]api.ECRepair, error) {
	var metas []api.Pin
	if c != nil {
		pin, _, err := p.ec.Layout(ctx, *c)
		if err != nil {
			return nil, err
		}
		metas = append(metas, pin)
	} else {
		live := p.liveTrusted()
		err := p.Pins(ctx, func(pin api.Pin) error {
			if pin.Type == api.MetaType && repair.InCharge(p.host.ID(), pin.Cid.Key(), live) {
				metas = append(metas, pin)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return p.ec.RepairAll(ctx, metas, lost), nil
}

// sinkFor stores in this peer's kubo and pushes to the peers in to.
func (p *Peer) sinkFor(to []peer.ID) *p2p.Fanout {
	return p2p.NewFanout(p.node.Host, p.proof, p.ipfs, to)
}
