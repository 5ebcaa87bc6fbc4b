// Package p2p owns a peer's libp2p side: the host, gossipsub, and the
// "ipfs-lite" DAG service through which go-ds-crdt's delta blocks travel
// (a Badger-backed blockstore served and fetched by bitswap on the peer's own
// host, with no kubo involved). It also keeps the peer connected to the
// addresses it is given, retrying with capped backoff for as long as it runs.
package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	crdt "github.com/ipfs/go-ds-crdt"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

var logger = logging.Logger("p2p")

// Config is what the node needs to start.
type Config struct {
	// Key is the peer's identity.
	Key crypto.PrivKey
	// Listen are the multiaddrs to listen on.
	Listen []string
	// Store keeps the CRDT blocks, under BlocksNamespace.
	Store           ds.Batching
	BlocksNamespace string
	// Host, when set, is used instead of creating one (tests: mocknet).
	Host host.Host
	// ReconnectMax caps the backoff between tries to reach a bootstrap
	// address. Default 30s.
	ReconnectMax time.Duration
	// MDNS, when set, is the mDNS service name under which the node
	// advertises itself and looks for peers on the local network; peers
	// found are kept connected like bootstrap peers. "" disables mDNS.
	MDNS string
	// Secret, when set (32 bytes), makes this a libp2p private network:
	// only peers with the same secret can connect at all. Only TCP is
	// used then (QUIC cannot carry a private network).
	Secret []byte
	// Follower: this peer holds no write key; it gossips less
	// (FollowerGossip).
	Follower bool
	// PubSubOptions are added to gossipsub's (the ring harness: a tracer
	// counting messages by topic).
	PubSubOptions []pubsub.Option
}

// Node is the running libp2p side of a peer.
type Node struct {
	Host   host.Host
	PubSub *pubsub.PubSub
	// Bandwidth counts libp2p traffic by protocol (nil when the host
	// was given in Config).
	Bandwidth *metrics.BandwidthCounter
	// DAG stores and fetches CRDT delta blocks (bitswap-backed).
	DAG crdt.SessionDAGService

	bstore   blockstore.Blockstore
	bswap    *bitswap.Bitswap
	bserv    blockservice.BlockService
	lifetime context.Context
	cancel   context.CancelFunc
	keepMu   sync.Mutex
	keeping  map[peer.ID]bool // peers with a keepConnected loop
	wg       sync.WaitGroup
	cfg      Config
	mdns     io.Closer

	kickMu sync.Mutex
	kickCh chan struct{} // closed to make every reconnect loop try now

	scoreMu sync.Mutex
	scores  map[peer.ID]float64 // gossipsub scores, refreshed every second
}

// kick makes every keepConnected loop try at once: called when a cluster
// peer connects, since that usually means the network is back.
func (n *Node) kick() {
	n.kickMu.Lock()
	defer n.kickMu.Unlock()
	close(n.kickCh)
	n.kickCh = make(chan struct{})
}

func (n *Node) kicked() <-chan struct{} {
	n.kickMu.Lock()
	defer n.kickMu.Unlock()
	return n.kickCh
}

// protectTag marks connections to cluster peers in the connection
// manager, which then never trims them.
const protectTag = "pinring-cluster"

// New starts the host (unless cfg.Host is given), gossipsub and bitswap.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 30 * time.Second
	}
	n := &Node{cfg: cfg, kickCh: make(chan struct{})}
	ctx, n.cancel = context.WithCancel(ctx)
	n.lifetime = ctx
	h := cfg.Host
	if h == nil {
		var err error
		// Trimming starts far above what a cluster needs, and cluster
		// peers are protected from it anyway.
		cm, err := connmgr.NewConnManager(200, 400, connmgr.WithGracePeriod(time.Minute))
		if err != nil {
			n.cancel()
			return nil, err
		}
		n.Bandwidth = metrics.NewBandwidthCounter()
		opts := []libp2p.Option{libp2p.Identity(cfg.Key), libp2p.ListenAddrStrings(cfg.Listen...), libp2p.ConnectionManager(cm),
			libp2p.BandwidthReporter(n.Bandwidth)}
		if len(cfg.Secret) > 0 {
			if len(cfg.Secret) != 32 {
				n.cancel()
				return nil, fmt.Errorf("private network secret of %d bytes, want 32", len(cfg.Secret))
			}
			opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(cfg.Secret)), libp2p.Transport(tcp.NewTCPTransport))
		}
		h, err = libp2p.New(opts...)
		if err != nil {
			n.cancel()
			return nil, fmt.Errorf("starting the libp2p host on %v: %w", cfg.Listen, err)
		}
	}
	n.Host = h
	// A cluster peer connecting usually means the network is back; one
	// disconnecting should be redialled without waiting out a backoff.
	onChange := func(nw network.Network, c network.Conn) {
		n.keepMu.Lock()
		kept := n.keeping[c.RemotePeer()]
		n.keepMu.Unlock()
		if kept {
			n.kick()
		}
	}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: onChange, DisconnectedF: func(nw network.Network, c network.Conn) {
		if nw.Connectedness(c.RemotePeer()) != network.Connected {
			onChange(nw, c)
		}
	}})
	ps, err := pubsub.NewGossipSub(ctx, h, append([]pubsub.Option{
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithFloodPublish(true),
		// No peer exchange: the ring chooses whom a peer keeps connected
		// (membership: every writer and 32 members). A pruned peer
		// dialling the peers suggested to it added connections nothing
		// closed, growing with the ring (TestPrunedPeersDoNotDialSuggestedPeers).
		pubsub.WithPeerExchange(false),
		// Messages wait for validation rather than being dropped
		// beyond gossipsub's default 32: a writer hears every
		// follower's heartbeats (100 a second at 1,000 followers),
		// and a burst met a busy machine (TestABurstIsValidatedNotDropped).
		// 256 of at most 1 MiB each: what a flooder can make it hold.
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithPeerScore(peerScoreParams(), peerScoreThresholds()),
		pubsub.WithPeerScoreInspect(n.inspectScores, time.Second)}, append(gossipFor(cfg.Follower), cfg.PubSubOptions...)...)...)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("starting gossipsub: %w", err)
	}
	n.PubSub = ps
	bs := blockstore.NewBlockstore(namespace.Wrap(cfg.Store, ds.NewKey(cfg.BlocksNamespace)))
	// No provider search: blocks are asked of connected cluster peers only.
	n.bstore = bs
	// Bitswap serves the ring's delta blocks (small, from Badger), not
	// content (kubo does): 16 blockstore readers, not its default 128
	// goroutines a peer.
	n.bswap = bitswap.New(ctx, bsnet.NewFromIpfsHost(h), nil, bs, bitswap.EngineBlockstoreWorkerCount(16))
	Serve(h, DAGSync, nil, n.serveDAGSync, nil)
	n.bserv = blockservice.New(bs, n.bswap)
	n.DAG = merkledag.NewDAGService(n.bserv)
	if cfg.MDNS != "" {
		svc := mdns.NewMdnsService(h, cfg.MDNS, mdnsFound{n})
		if err := svc.Start(); err != nil {
			// No multicast interface is not fatal: the other ways stay.
			logger.Warnf("mDNS discovery off: %s", err)
		} else {
			n.mdns = svc
		}
	}
	return n, nil
}

type mdnsFound struct{ n *Node }

// HandlePeerFound keeps a peer found on the LAN connected.
func (f mdnsFound) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == f.n.Host.ID() || f.n.lifetime.Err() != nil {
		return
	}
	logger.Debugf("mDNS: found %s", ai.ID)
	f.n.keep(ai)
}

// Connect keeps trying to connect to addrs (each a /p2p multiaddr) with
// backoff capped at ReconnectMax, until connected or the node closes; once
// connected it checks again every ReconnectMax and reconnects if the link
// dropped. It returns at once; a peer already being kept is skipped.
func (n *Node) Connect(addrs ...ma.Multiaddr) {
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		logger.Errorf("bootstrap addresses: %s", err)
		return
	}
	for _, ai := range infos {
		n.keep(ai)
	}
}

// maxKeeping bounds the keepConnected loops (the peer starts them only for
// members and the addresses it was given, docs/security.md).
const maxKeeping = 1024

// keep starts a keepConnected loop for ai unless one runs, and protects
// the connection from the connection manager.
func (n *Node) keep(ai peer.AddrInfo) {
	if ai.ID == n.Host.ID() {
		return
	}
	n.keepMu.Lock()
	defer n.keepMu.Unlock()
	if n.keeping == nil {
		n.keeping = map[peer.ID]bool{}
	}
	if n.keeping[ai.ID] {
		// Known already: new addresses help the running loop.
		n.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		return
	}
	if len(n.keeping) >= maxKeeping {
		logger.Warnf("already keeping connections to %d peers: not keeping %s", maxKeeping, ai.ID)
		return
	}
	n.keeping[ai.ID] = true
	n.Host.ConnManager().Protect(ai.ID, protectTag)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.keepConnected(n.lifetime, ai)
	}()
}

// Keeping lists the peers this node keeps trying to stay connected to.
func (n *Node) Keeping() []peer.ID {
	n.keepMu.Lock()
	defer n.keepMu.Unlock()
	out := make([]peer.ID, 0, len(n.keeping))
	for id := range n.keeping {
		out = append(out, id)
	}
	return out
}

func (n *Node) keepConnected(ctx context.Context, ai peer.AddrInfo) {
	wait := 250 * time.Millisecond
	for {
		if n.Host.Network().Connectedness(ai.ID) != network.Connected {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.Host.Connect(cctx, ai)
			cancel()
			if err != nil {
				logger.Debugf("connecting to %s: %s (next try in %s)", ai.ID, err, wait)
				wait = min(wait*2, n.cfg.ReconnectMax)
			} else {
				logger.Infof("connected to %s", ai.ID)
				wait = n.cfg.ReconnectMax
			}
		} else {
			wait = n.cfg.ReconnectMax
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-n.kicked():
			// Another cluster peer just connected: the network is
			// probably back, so try now and start the backoff over.
			wait = 250 * time.Millisecond
		}
	}
}

// Close stops bitswap, the block service and the host, joining errors.
func (n *Node) Close() error {
	n.cancel()
	var errs []error
	if n.mdns != nil {
		errs = append(errs, n.mdns.Close())
	}
	n.wg.Wait()
	if n.bserv != nil {
		errs = append(errs, n.bserv.Close())
	}
	if n.bswap != nil {
		errs = append(errs, n.bswap.Close())
	}
	if n.Host != nil {
		errs = append(errs, n.Host.Close())
	}
	return errors.Join(errs...)
}

// P2PAddrs are the host's addresses with its /p2p part.
func (n *Node) P2PAddrs() []ma.Multiaddr {
	suffix, _ := ma.NewMultiaddr("/p2p/" + n.Host.ID().String())
	var out []ma.Multiaddr
	for _, a := range n.Host.Addrs() {
		out = append(out, a.Encapsulate(suffix))
	}
	return out
}
