// Package peer wires the components into one running cluster peer: the
// Badger datastore, the libp2p host, the CRDT pinset, the kubo connector,
// the pin tracker and the REST API. It owns their lifecycle; the logic
// lives in the packages it wires.
package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/ipfs/go-ds-badger2"
	logging "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/admission"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/capacity"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/ecfile"
	"github.com/pinring/pinring/ipfsclient"
	"github.com/pinring/pinring/membership"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/pinning"
	"github.com/pinring/pinring/pintracker"
	"github.com/pinring/pinring/prommetrics"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/repair"
	"github.com/pinring/pinring/restapi"
	"github.com/pinring/pinring/restapi/auth"
	"github.com/pinring/pinring/restapi/ipfsproxy"
	"github.com/pinring/pinring/restapi/pinsvc"
	"github.com/pinring/pinring/trust"
)

var logger = logging.Logger("peer")

// Peer is one running cluster peer.
type Peer struct {
	writerTables writerTables // a quiet follower's copies of writers' metrics tables (status.go)
	// Writer is the write side: Pin, Unpin, Replace, PinGet.
	*pinning.Writer
	cfg   peerconfig.Config
	node  *p2p.Node
	host  hostIDer
	store *badger.Datastore
	// run is the epoch this peer reads and writes (epoch.go); writes hold
	// epochMu for reading, a switch holds it for writing.
	run        atomic.Pointer[epochRun]
	epochMu    sync.RWMutex
	switching  atomic.Bool
	epochTopic *pubsub.Topic
	// lastRetired is when an epoch was last dropped here (Unix ns);
	// history, the current epoch's last count (compactLoop).
	lastRetired   atomic.Int64
	history       atomic.Pointer[crdtstate.History]
	epochRejected atomic.Int64
	// epochGreetings counts epoch records published to greet a join.
	epochGreetings atomic.Int64
	ns             string // the cluster's namespace: /pinring/<cluster>
	signer         *trust.Signer
	verifier       *trust.Verifier
	ipfs           *ipfsclient.Client
	tracker        *pintracker.Tracker
	monitor        *pubsubmon.Monitor
	api            *restapi.Server
	pinsvc         *pinsvc.Server
	proxy          *ipfsproxy.Server
	prom           *prommetrics.Metrics
	own            *capacity.Own
	ledger         *capacity.Ledger
	// admitted are the writers' admissions: who is allocated pins.
	admitted *admission.Book
	// auditor challenges peers and keeps what they proved.
	auditor *audit.Auditor

	keys     trust.KeySet
	writeKey *trust.WriteKey // nil on a read-only peer
	writerID string          // writeKey's public key, as records name it

	ipfsMu sync.Mutex
	ipfsID api.IPFSID

	peers *membership.Table
	ring  *membership.Ring
	proof p2p.KeyProof // opens the streams only writers may use
	wg    sync.WaitGroup
	dir   string

	lifetime context.Context
	repairs  *repair.Loop
	ec       *ecfile.Files
	// snapshot is the snapshot this peer started from, if any.
	snapshot *crdtstate.SnapshotStats
	// starting is what New is doing while the REST API is already open;
	// nil once the peer is ready.
	starting atomic.Pointer[startPhase]
	leftOnce sync.Once
	left     chan struct{}

	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// Option changes how New starts a peer.
type Option func(*options)

type options struct {
	apiListening func(addr string)
}

// OnAPIListening has New call f with the REST API's address as soon as it
// listens — before a snapshot is loaded, while the API still answers 503.
func OnAPIListening(f func(addr string)) Option {
	return func(o *options) { o.apiListening = f }
}

// New starts a peer from the config directory dir. Close stops it.
// testHost, set by tests, makes the libp2p host a peer runs on (mocknet
// hosts, which tests can partition).
var testHost func(crypto.PrivKey) (host.Host, error)

func New(ctx context.Context, cfg peerconfig.Config, dir string, opts ...Option) (_ *Peer, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sk, err := peerconfig.LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	p := &Peer{cfg: cfg, dir: dir, left: make(chan struct{})}
	p.repairs = repair.NewLoop(cfg.Repair, repairCluster{p})
	p.ec = ecfile.New(ecCluster{p})
	if p.keys, err = trust.NewKeySet(cfg.Trust.WriteKeys); err != nil {
		return nil, err
	}
	if p.keys.Len() == 0 {
		return nil, errors.New("trust.write_keys is empty, so nothing could be verified: run 'cluster-peer keys new-write-key' to found a cluster, or 'cluster-peer init --ticket <ticket>' to join one")
	}
	switch wk, err := trust.LoadWriteKey(cfg.WriteKeyPath(dir)); {
	case trust.IsNotExist(err):
		// A read-only peer.
	case err != nil:
		return nil, err
	case !p.keys.Has(wk.Public()):
		return nil, fmt.Errorf("%s is %s, which is not among trust.write_keys: the others would drop every write; add it with 'cluster-peer keys add-write-key %s' on every peer, or remove the file to run read-only",
			cfg.WriteKeyPath(dir), wk, wk.Public())
	default:
		p.writeKey, p.writerID = wk, wk.Public().String()
	}
	secret, err := cfg.SecretBytes()
	if err != nil {
		return nil, err
	}
	mdnsName := ""
	if cfg.P2P.MDNS {
		mdnsName = cfg.MDNSService()
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.lifetime = ctx
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	if p.ipfs, err = ipfsclient.New(cfg.IPFS); err != nil {
		return nil, err
	}
	if p.store, err = crdtstate.OpenBadger(cfg.DatastorePath(dir)); err != nil {
		return nil, err
	}
	// Erasure coding spools in the peer's own directory, emptied once
	// the datastore's lock is held (no other instance uses it): what a
	// crash left is gone at the next start.
	p.ec.SpoolDir = filepath.Join(dir, "ec-spool")
	if err := os.RemoveAll(p.ec.SpoolDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.ec.SpoolDir, 0o700); err != nil {
		return nil, err
	}
	ns := "/pinring/" + cfg.Cluster.Name
	var h host.Host
	if testHost != nil {
		if h, err = testHost(sk); err != nil {
			return nil, err
		}
	}
	p.node, err = p2p.New(ctx, p2p.Config{Key: sk, Listen: cfg.P2P.Listen, Store: crdtstate.Patient(p.store),
		BlocksNamespace: ns + "/blocks", ReconnectMax: cfg.P2P.ReconnectMax.D(), Secret: secret, MDNS: mdnsName, Host: h,
		Follower: p.writeKey == nil})
	if err != nil {
		return nil, fmt.Errorf("%w (config p2p.listen, env PINRING_P2P_LISTEN)", err)
	}
	p.host = p.node.Host
	p.peers = membership.New()
	p.ring = &membership.Ring{Table: p.peers, Self: p.host.ID(), Cluster: cfg.Cluster.Name, Keys: p.keys,
		Member: func(pid peer.ID) bool { return p.admitted.AdmittedOrOpen(pid) }, Me: p.ID,
		Connect: p.node.Connect, Keeping: func() int { return len(p.node.Keeping()) }, Addrs: p.node.Host.Peerstore().Addrs,
		Connected: func(pid peer.ID) bool { return p.node.Host.Network().Connectedness(pid) == network.Connected },
		KuboID:    p.ipfsIDCached, DialKubo: p.SwarmConnect, KuboPeers: p.ipfs.SwarmPeers,
		Peerstore: filepath.Join(dir, peerconfig.PeerstoreFile),
		AskPeers: func(ctx context.Context, pid peer.ID) ([]json.RawMessage, error) {
			return p2p.AskPeers(ctx, p.node.Host, pid, p.proof)
		},
		Peers: p.node.Host.Network().Peers}
	p.proof = p2p.KeyProof{Key: p.writeKey, Cluster: cfg.Cluster.Name, Self: p.host.ID(), Endorsed: p.ring.Endorsed, Writer: p.isWriter}
	// The pinset and the repair loop are made below: the book reaches
	// them when it is first used, after New.
	p.admitted = admission.New(admission.Deps{Self: p.host.ID(), Policy: cfg.Allocate.Admission, IsWriter: p.isWriter,
		List: func(ctx context.Context) ([]api.Admission, error) { return p.st().Admissions(ctx) },
		Put: func(ctx context.Context, a api.Admission) error {
			p.epochMu.RLock()
			defer p.epochMu.RUnlock()
			return p.st().PutAdmission(ctx, a)
		},
		Revoked: func() { p.repairs.Kick() }})
	p.auditor = p.newAuditor()
	p.Writer = pinning.New(pinning.Deps{Cluster: cfg.Cluster.Name, Writer: p.writerID,
		ReplicationMin: cfg.Cluster.ReplicationFactorMin, ReplicationMax: cfg.Cluster.ReplicationFactorMax,
		Pinset: pinset{p}, CheckAllocations: p.admitted.CheckAllocations,
		Allocate: func(pin *api.Pin, current []peer.ID) ([]peer.ID, error) { return p.allocate(pin, current) },
		Push:     func(to []peer.ID) pinning.BlockPush { return p.sinkFor(to) }, Erasure: p.ec.Add})
	p.peers.Member = p.admitted.AdmittedOrOpen
	// Topics are joined (and, later, their validators registered) before
	// the CRDT broadcaster starts.
	peersTopics, err := membership.JoinTopics(p.node.PubSub, ns, p2p.TopicScore())
	if err != nil {
		return nil, err
	}
	p.ns = ns
	if p.writeKey != nil {
		p.signer = trust.NewSigner(p.writeKey, cfg.Cluster.Name, string(p.host.ID()))
	}
	p.verifier = trust.NewVerifier(cfg.Cluster.Name, p.keys)

	p.prom = newPromMetrics(p)
	p.own = capacity.NewOwn(ctx, p.ipfs, cfg.Allocate.FullThreshold, cfg.Allocate.GCWhenFull, func() capacity.Queue {
		if p.tracker == nil {
			return capacity.Queue{}
		}
		q := capacity.Queue{Absorbed: p.tracker.Absorbed()}
		q.Pinned, q.Queued = p.tracker.Counts()
		return q
	})
	p.ledger = &capacity.Ledger{Interval: cfg.Monitor.Interval.D(), Grace: cfg.Repair.Grace.D(),
		PinSizeEstimate: cfg.Allocate.PinSizeEstimate, Allowed: p.admitted.Allocatable,
		Unverified: p.admitted.Unverified, UnverifiedCap: uint64(cfg.Audit.UnverifiedCap)}
	// The tracker is built before the state so that the state's change
	// hook can reach it, and started after, once the pinset is readable.
	p.tracker, err = pintracker.New(cfg.Tracker, pintracker.Deps{
		Pinned: func(d time.Duration) {
			p.own.PinDone()
			p.prom.PinDone(d)
		},
		IPFS:   trackerIPFS(p.ipfs),
		Self:   p.host.ID(),
		Pinset: func(ctx context.Context, out chan<- api.Pin) error { return p.st().List(ctx, out) },
		Get: func(ctx context.Context, c api.Cid) (*api.Pin, error) {
			pin, err := p.st().Get(ctx, c)
			if errors.Is(err, crdtstate.ErrNotFound) {
				return nil, nil
			}
			return pin, err
		},
	})
	if err != nil {
		return nil, err
	}
	boot, err := cfg.BootstrapAddrs()
	if err != nil {
		return nil, err
	}
	// The REST API opens now and answers 503, saying what the peer is
	// doing, until the peer is ready: loading a large snapshot takes a
	// while.
	p.setStarting("opening the pinset")
	checker, err := auth.New(cfg.API.BasicAuthCredentials, filepath.Join(dir, peerconfig.TokenKeyFile), filepath.Join(dir, peerconfig.RevokedTokensFile))
	if err != nil {
		return nil, err
	}
	ex := promExtras(p.prom)
	ex.Auth = checker
	ex.Starting = p.startingMessage
	if p.api, err = restapi.New(cfg.API, p, ex); err != nil {
		return nil, err
	}
	p.api.Start()
	if o.apiListening != nil {
		o.apiListening(p.api.Addr())
	}
	// The other APIs share the REST API's users and tokens, and open now
	// too: until the peer is ready they answer 503 as the REST API does
	// (the proxy forwards what kubo answers itself).
	var authorize func(r *http.Request, write bool) error // nil: no auth (loopback only)
	if checker.Enabled() {
		authorize = func(r *http.Request, write bool) error {
			_, err := checker.Check(r, write)
			if errors.Is(err, api.ErrForbidden) {
				return fmt.Errorf("%w: %v", api.ErrForbidden, err)
			}
			return err
		}
	}
	if cfg.Proxy.Listen != "" {
		if p.proxy, err = ipfsproxy.New(cfg.Proxy, cfg.IPFS.API, p, authorize); err != nil {
			return nil, fmt.Errorf("%w (config ipfsproxy.listen, env PINRING_IPFSPROXY_LISTEN)", err)
		}
		p.proxy.WhileStarting(p.startingMessage)
		p.proxy.Start()
		logger.Infof("IPFS proxy on http://%s", p.proxy.Addr())
	}
	if cfg.PinSvc.Listen != "" {
		if p.pinsvc, err = pinsvc.New(cfg.PinSvc, p, authorize); err != nil {
			return nil, fmt.Errorf("%w (config pinsvc.listen, env PINRING_PINSVC_LISTEN)", err)
		}
		if cfg.API.TLS() {
			p.pinsvc.UseTLS(cfg.API.TLSCertFile, cfg.API.TLSKeyFile)
		}
		p.pinsvc.WhileStarting(p.startingMessage)
		p.pinsvc.Start()
		logger.Infof("Pinning Service API on http://%s", p.pinsvc.Addr())
	}
	remembered := membership.Remembered(filepath.Join(dir, peerconfig.PeerstoreFile)) // peers remembered from earlier runs
	cur, err := crdtstate.LoadCurrentEpoch(ctx, p.store, ns)
	if err != nil {
		return nil, err
	}
	if wait := cfg.State.SnapshotWait.D(); wait > 0 && len(boot)+len(remembered) > 0 {
		stateNS, blocksNS := crdtstate.StateNamespace(ns, cur.N()), ns+"/blocks"
		if _, err := crdtstate.DropPartialSnapshot(ctx, p.store, stateNS, blocksNS); err != nil {
			return nil, err
		}
		switch empty, err := crdtstate.IsEmpty(p.store, stateNS, blocksNS); {
		case err != nil:
			return nil, err
		case empty:
			p.node.Connect(boot...)
			p.node.Connect(remembered...)
			p.syncSnapshot(ctx, wait)
			p.setStarting("opening the pinset")
			// The snapshot may be of a later epoch.
			if cur, err = crdtstate.LoadCurrentEpoch(ctx, p.store, ns); err != nil {
				return nil, err
			}
		}
	}
	// The CRDT reads announcements (and dagsync asks for the height) as
	// soon as it opens, before openEpoch returns.
	st, bcast, err := p.openEpoch(ctx, cur.N(), true)
	if err != nil {
		return nil, err
	}
	p.run.Store(&epochRun{cur: cur, state: st, bcast: bcast})
	if err := p.retireOlder(ctx); err != nil {
		return nil, err
	}
	if err := p.dropNewer(ctx); err != nil {
		return nil, err
	}
	if err := p.admitted.Reload(ctx); err != nil {
		return nil, fmt.Errorf("reading the admissions: %w", err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.admitted.Watch(ctx, func(err error) { logger.Warnf("reading the admissions: %s", err) })
	}()
	if err := p.tracker.Start(ctx); err != nil {
		return nil, err
	}
	p.refreshIPFSID(ctx)
	p.monitor, err = pubsubmon.New(ctx, cfg.Monitor, pubsubmon.Deps{
		PubSub: p.node.PubSub, Topic: ns + "/metrics", Self: p.host.ID(),
		Peername: cfg.Cluster.Peername, Collect: p.collectMetrics, Member: p.admitted.Allocatable, Score: p2p.TopicScore(),
		Writer: p.isWriter, Members: p.peers.Len,
		OnAlert: func(a api.Alert) {
			if a.Left {
				p.repairs.Kick()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	p.ring.Reported = p.monitor.ReportedMembers
	// A peer this one has no connection left to is down an interval
	// later unless a heartbeat of it arrives meanwhile.
	p.monitor.WatchDisconnects(p.node.Host.Network())
	p2p.ServeMetrics(p.node.Host, p.monitor.Latest)
	if p.writeKey != nil {
		p2p.ServePeers(p.node.Host, p.proof, func() []api.ID { return p.ring.Relay(p.lifetime) })
	}
	p2p.ServeStatus(p.node.Host, func(ctx context.Context, c api.Cid) api.PinInfo { return p.withIdentity(p.tracker.Status(ctx, c)) },
		func(ctx context.Context, fn func(api.PinInfo) error) error {
			return p.tracker.StatusAll(ctx, nil, func(pi api.PinInfo) error { return fn(p.withIdentity(pi)) })
		})
	p2p.ServeBlockPush(p.lifetime, p.node.Host, p.proof, p.ipfs, 5*time.Minute)
	p2p.ServeAudit(p.lifetime, p.node.Host, p.proof, p.prove)
	snap := p2p.SnapshotServer{Cluster: p.cfg.Cluster.Name, Writers: p.ring.ConnectedWriters,
		Write: func(ctx context.Context, w io.Writer) error {
			began := time.Now()
			sent, err := p.writeSnapshot(ctx, w)
			if err == nil {
				logger.Infof("snapshot served: %d blocks, %d entries, %.1f MiB in %s",
					sent.Blocks, sent.Pairs, float64(sent.Bytes)/(1<<20), time.Since(began).Round(time.Millisecond))
			}
			return err
		}}
	if p.writeKey != nil {
		snap.Writer = p.proof
	}
	p2p.ServeSnapshot(p.lifetime, p.node.Host, snap)
	p2p.ServeRepoGC(p.lifetime, p.node.Host, p.proof, p.localRepoGC, func(reason string) api.RepoGC {
		return api.RepoGC{Peer: p.host.ID(), Peername: p.cfg.Cluster.Peername, Error: reason}
	})
	if err := p.joinEpochs(ctx); err != nil {
		return nil, err
	}
	p.wg.Go(func() { p.compactLoop(ctx) })
	if p.writeKey != nil { // repair and expiry write; followers only pin
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.repairs.Run(ctx)
		}()
		p.wg.Go(func() { p.auditor.Run(ctx) })
	}
	p.wg.Go(func() {
		if err := p.ring.Announce(ctx, peersTopics, p.writeKey != nil, cfg.Cluster.AnnounceInterval.D()); err != nil {
			logger.Errorf("peers topic: %s", err)
		}
	})
	p.node.Connect(boot...)
	p.node.Connect(remembered...)
	p.wg.Go(func() { p.ring.Watch(ctx, cfg.Cluster.AnnounceInterval.D()) })
	p.starting.Store(nil)
	logger.Infof("peer %s (%s, %s of cluster %q) ready; REST API on http://%s", p.host.ID(), cfg.Cluster.Peername, p.role(), cfg.Cluster.Name, p.api.Addr())
	return p, nil
}

// onChange feeds every pinset change (local or, later, remote) to the
// tracker. It never blocks.
func (p *Peer) onChange(c api.Cid, pin *api.Pin) {
	logger.Debugf("pinset change %s (removed: %v)", c, pin == nil)
	if pin == nil {
		p.tracker.Untrack(c)
		return
	}
	p.repairs.Watch.Saw(time.Now(), pin)
	p.tracker.Track(pin)
}

// Leave implements restapi.Backend: a peer can only remove itself. It
// tells the others it leaves for good — they move its pins at once — and
// then Left is closed, for the daemon to stop.
func (p *Peer) Leave(ctx context.Context, id peer.ID) error {
	if id != p.host.ID() {
		return fmt.Errorf("%w: %s is not this peer (%s): a peer can only remove itself; run 'cluster-peer leave' on that peer, or stop it and let repair move its pins after repair.grace",
			api.ErrBadRequest, id, p.host.ID())
	}
	return p.leave(ctx)
}

func (p *Peer) leave(ctx context.Context) error {
	if err := p.monitor.Leave(ctx); err != nil {
		return fmt.Errorf("announcing the departure: %w", err)
	}
	logger.Infof("left the cluster: the others move this peer's pins now")
	// Gossipsub sends in the background: give the message a moment to
	// leave before the host goes away.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	p.leftOnce.Do(func() { close(p.left) })
	return nil
}

// Left is closed once the peer has left the cluster (Leave): stop it then.
func (p *Peer) Left() <-chan struct{} { return p.left }

// LeaveIfConfigured announces the departure when cluster.leave_on_shutdown
// is set; call it before Close on a requested shutdown.
func (p *Peer) LeaveIfConfigured(ctx context.Context) error {
	if !p.cfg.Cluster.LeaveOnShutdown {
		return nil
	}
	select {
	case <-p.left:
		return nil // done already
	default:
	}
	return p.leave(ctx)
}

// Run serves until ctx ends (a requested shutdown: the peer leaves the
// cluster first if cluster.leave_on_shutdown) or the peer has left, then
// closes it. Progress goes to out.
func (p *Peer) Run(ctx context.Context, out io.Writer) error {
	select {
	case <-ctx.Done():
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.LeaveIfConfigured(lctx); err != nil {
			fmt.Fprintf(out, "leaving: %s\n", err)
		}
		cancel()
	case <-p.Left():
		fmt.Fprintln(out, "left the cluster")
	}
	fmt.Fprintln(out, "shutting down")
	return p.Close()
}

// SwarmConnect asks this peer's kubo to connect to addrs. Two kubos that
// dial each other at the same moment can both fail ("failed to negotiate
// security protocol": each side's handshake starts as the client); that
// happens when a pinning-service client connects to our kubo, a delegate,
// while we connect to its origins. So a failed connect is tried again
// after a random pause, up to swarmConnectTries times while ctx lasts.
func (p *Peer) SwarmConnect(ctx context.Context, addrs ...ma.Multiaddr) error {
	var err error
	for try := range swarmConnectTries {
		if try > 0 {
			select {
			case <-time.After(time.Duration(100+rand.IntN(500)) * time.Millisecond):
			case <-ctx.Done():
				return err
			}
		}
		if err = p.ipfs.SwarmConnect(ctx, addrs...); err == nil {
			return nil
		}
	}
	return err
}

const swarmConnectTries = 4

// ProxyAddr is the IPFS proxy's host:port ("" when off).
func (p *Peer) ProxyAddr() string {
	if p.proxy == nil {
		return ""
	}
	return p.proxy.Addr()
}

// PinSvcAddr is the Pinning Service API's host:port ("" when off).
func (p *Peer) PinSvcAddr() string {
	if p.pinsvc == nil {
		return ""
	}
	return p.pinsvc.Addr()
}

// SyncProgress reports the pinset DAG's height and the DAG jobs still
// waiting to be merged (0 once caught up with what was announced).
func (p *Peer) SyncProgress(ctx context.Context) (height uint64, queued int) {
	_, height, queued = p.st().Stats(ctx)
	return height, queued
}

// APIAddr is the REST API's host:port.
func (p *Peer) APIAddr() string { return p.api.Addr() }

// PeerID is this peer's libp2p ID.
func (p *Peer) PeerID() peer.ID { return p.host.ID() }

// P2PAddrs are this peer's libp2p addresses, with /p2p.
func (p *Peer) P2PAddrs() []ma.Multiaddr { return p.node.P2PAddrs() }

type hostIDer interface{ ID() peer.ID }

func (p *Peer) role() string {
	if p.writeKey != nil {
		return api.RoleWriter
	}
	return api.RoleFollower
}

// CanWrite reports whether this peer holds a write key.
func (p *Peer) CanWrite() bool { return p.writeKey != nil }

// Close stops every component, in order, even when one fails, and joins
// their errors: API → (cancel: broadcaster, announcer) → tracker → pinset →
// libp2p node (block service, bitswap, host) → Badger.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.api != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, p.api.Shutdown(ctx))
			cancel()
		}
		if p.pinsvc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, p.pinsvc.Shutdown(ctx))
			cancel()
		}
		if p.proxy != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, p.proxy.Shutdown(ctx))
			cancel()
		}
		if p.cancel != nil {
			p.cancel()
		}
		p.wg.Wait()
		if p.own != nil {
			p.own.Close()
		}
		if p.monitor != nil {
			errs = append(errs, p.monitor.Close())
		}
		if p.tracker != nil {
			errs = append(errs, p.tracker.Close())
		}
		if r := p.run.Load(); r != nil {
			errs = append(errs, r.state.Close())
		}
		if p.node != nil {
			errs = append(errs, p.node.Close())
		}
		if p.store != nil {
			errs = append(errs, p.store.Close())
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

func (p *Peer) refreshIPFSID(ctx context.Context) api.IPFSID {
	id, err := p.ipfs.ID(ctx)
	p.ipfsMu.Lock()
	defer p.ipfsMu.Unlock()
	if err == nil || p.ipfsID.ID == "" {
		p.ipfsID = id
	}
	if err != nil {
		p.ipfsID.Error = err.Error()
	}
	return p.ipfsID
}

// ID implements restapi.Backend.
func (p *Peer) ID(ctx context.Context) api.ID {
	cps := []peer.ID{p.host.ID()}
	cpAddrs := []ma.Multiaddr{}
	for _, e := range p.peers.Entries() {
		cps = append(cps, e.ID.ID)
		cpAddrs = append(cpAddrs, e.ID.Addresses...)
	}
	id := api.ID{
		ID:                    p.host.ID(),
		Addresses:             p.node.P2PAddrs(),
		ClusterPeers:          cps,
		ClusterPeersAddresses: cpAddrs,
		Version:               api.Version,
		RPCProtocolVersion:    "/pinring/rpc/0.1.0",
		IPFS:                  p.refreshIPFSID(ctx),
		Peername:              p.cfg.Cluster.Peername,
		Cluster:               p.cfg.Cluster.Name,
		Role:                  p.role(),
	}
	if p.writeKey != nil {
		id.WriteKey = p.writeKey.Public().String()
		id.WriteKeyProof = p.writeKey.Endorse(p.cfg.Cluster.Name, p.host.ID().String())
	}
	return id
}

// Peers implements restapi.Backend: this peer, then every cluster peer
// heard from, with when it was last heard and whether it is connected.
func (p *Peer) Peers(ctx context.Context, fn func(api.ID) error) error {
	for _, id := range p.clusterPeers(ctx) {
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// ResolvePath implements restapi.Backend through kubo.
func (p *Peer) ResolvePath(ctx context.Context, path string) (api.Cid, error) {
	return p.ipfs.Resolve(ctx, path)
}

// pinset is the pinset once New has opened it.
type pinset struct{ p *Peer }

func (s pinset) Get(ctx context.Context, c api.Cid) (*api.Pin, error) { return s.p.st().Get(ctx, c) }
func (s pinset) Add(ctx context.Context, pin *api.Pin) error {
	s.p.epochMu.RLock()
	defer s.p.epochMu.RUnlock()
	return s.p.st().Add(ctx, pin)
}
func (s pinset) Rm(ctx context.Context, c api.Cid) error {
	s.p.epochMu.RLock()
	defer s.p.epochMu.RUnlock()
	return s.p.st().Rm(ctx, c)
}

// Pins implements restapi.Backend.
func (p *Peer) Pins(ctx context.Context, fn func(api.Pin) error) error {
	return p.st().Each(ctx, fn)
}

func (p *Peer) global(pi api.PinInfo) api.GlobalPinInfo {
	var g api.GlobalPinInfo
	g.Add(p.withIdentity(pi))
	return g
}

func (p *Peer) ipfsIDCached() api.IPFSID {
	p.ipfsMu.Lock()
	defer p.ipfsMu.Unlock()
	return p.ipfsID
}

// Status implements restapi.Backend: this peer's status, or every
// cluster peer's.
func (p *Peer) Status(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error) {
	if local {
		return p.auditor.Annotate(p.global(p.tracker.Status(ctx, c))), nil
	}
	return p.auditor.Annotate(p.statuses().Of(ctx, c)), nil
}

// StatusAll implements restapi.Backend: this peer's statuses, or every
// cluster peer's merged per CID (a filter keeps a pin when any peer's
// status passes it).
func (p *Peer) StatusAll(ctx context.Context, filter api.StatusFilter, local bool, fn func(api.GlobalPinInfo) error) error {
	audited := func(g api.GlobalPinInfo) error { return fn(p.auditor.Annotate(g)) }
	if !local {
		return p.statuses().All(ctx, filter, audited)
	}
	return p.tracker.StatusAll(ctx, filter, func(pi api.PinInfo) error { return audited(p.global(pi)) })
}

// Recover implements restapi.Backend.
func (p *Peer) Recover(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error) {
	return p.global(p.tracker.Recover(ctx, c)), nil
}

// RecoverAll implements restapi.Backend.
func (p *Peer) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	for _, pi := range p.tracker.RecoverErrored(ctx) {
		if err := fn(p.global(pi)); err != nil {
			return err
		}
	}
	return nil
}

// MetricNames implements restapi.Backend.
func (p *Peer) MetricNames(context.Context) []string { return p.monitor.Names() }

// Metrics implements restapi.Backend.
func (p *Peer) Metrics(ctx context.Context, name string) []api.Metric {
	return slices.DeleteFunc(p.ringMetrics(ctx, name), func(mt api.Metric) bool { return !mt.Valid })
}

// Alerts implements restapi.Backend.
func (p *Peer) Alerts(context.Context) []api.Alert { return p.monitor.Alerts() }

// Digest implements restapi.Backend.
func (p *Peer) Digest(ctx context.Context) (api.StateDigest, error) {
	return p.st().Digest(ctx)
}

var (
	_ restapi.Backend   = (*Peer)(nil)
	_ pinsvc.Backend    = (*Peer)(nil)
	_ ipfsproxy.Backend = (*Peer)(nil)
)
