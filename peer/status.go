package peer

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/status"
)

// withIdentity fills in this peer's name and kubo identity.
func (p *Peer) withIdentity(pi api.PinInfo) api.PinInfo {
	id := p.ipfsIDCached()
	pi.PeerName = p.cfg.Cluster.Peername
	pi.IPFS = id.ID
	pi.IPFSAddresses = id.Addresses
	return pi
}

// otherPeers are the cluster peers to ask for their status: every peer
// heard from, except this one.
func (p *Peer) otherPeers() []peer.ID {
	return slices.DeleteFunc(p.peers.IDs(), func(id peer.ID) bool { return id == p.host.ID() })
}

// statuses is the cluster-wide status as this peer asks it.
func (p *Peer) statuses() status.Global {
	return status.Global{Self: p.host.ID(), Others: p.otherPeers, Peername: p.peers.Peername,
		Local: func(ctx context.Context, c api.Cid) api.PinInfo { return p.withIdentity(p.tracker.Status(ctx, c)) },
		LocalAll: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return p.tracker.StatusAll(ctx, nil, func(pi api.PinInfo) error { return fn(p.withIdentity(pi)) })
		},
		Ask: func(ctx context.Context, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error {
			return p2p.AskStatus(ctx, p.node.Host, pid, c, fn)
		},
		Summary: status.FromMetrics(func() []api.Metric { return p.ringMetrics(context.Background(), status.SummaryMetrics...) })}
}

// ringMetrics are the latest metrics called names of every peer, as a
// monitor's Latest gives them: this peer's own table, or, when it is a
// quiet follower of a large ring (it hears the writers' heartbeats only),
// a connected writer's table (the first that answers; an answer is
// reused for writerTableFor, as the dashboard asks every two seconds),
// with this peer's own entries from its table. If no writer answers, its
// own table.
func (p *Peer) ringMetrics(ctx context.Context, names ...string) []api.Metric {
	own := func() []api.Metric {
		var out []api.Metric
		for _, name := range names {
			out = append(out, p.monitor.Latest(name)...)
		}
		return out
	}
	if !p.monitor.Quiet() {
		return own()
	}
	self := p.host.ID()
	withOwn := func(ms []api.Metric) []api.Metric {
		ms = slices.DeleteFunc(slices.Clone(ms), func(mt api.Metric) bool { return mt.Peer == self })
		for _, mt := range own() {
			if mt.Peer == self {
				ms = append(ms, mt)
			}
		}
		return ms
	}
	key := strings.Join(names, "\x00")
	if ms, ok := p.writerTables.get(key); ok {
		return withOwn(ms)
	}
	for _, e := range p.peers.Entries() {
		w := e.ID.ID
		if !e.Writer || w == self || p.node.Host.Network().Connectedness(w) != network.Connected {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, status.One)
		ms, err := p2p.AskMetrics(actx, p.node.Host, w, names)
		cancel()
		if err != nil {
			logger.Debugf("asking writer %s for the metrics table: %s", w, err)
			continue
		}
		p.writerTables.put(key, ms)
		return withOwn(ms)
	}
	return own()
}

// writerTableFor is how long a writer's metrics table, asked by a quiet
// follower, answers again for the same names.
const writerTableFor = 5 * time.Second

// writerTables keeps the writers' tables a quiet follower asked for, by
// names, for writerTableFor.
type writerTables struct {
	mu sync.Mutex
	m  map[string]writerTable
}

type writerTable struct {
	at time.Time
	ms []api.Metric
}

func (t *writerTables) get(key string) ([]api.Metric, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	return e.ms, ok && time.Since(e.at) < writerTableFor
}

// put keeps ms for key, dropping the tables older than writerTableFor.
func (t *writerTables) put(key string, ms []api.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]writerTable{}
	}
	maps.DeleteFunc(t.m, func(_ string, e writerTable) bool { return time.Since(e.at) >= writerTableFor })
	t.m[key] = writerTable{at: time.Now(), ms: ms}
}
