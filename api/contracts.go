package api

import (
	"context"
	"io"
	"iter"
	"net/http"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// This file is the contracts between Pinring's parts: read it first.
//
// The parts, and which imports which (docs/architecture.md draws it):
//
//	cmd/*            the three binaries
//	peer             wiring: builds the components, connects them, owns
//	                 their lifecycle; implements the three Backends below
//	restapi, restapi/pinsvc, restapi/ipfsproxy
//	                 the HTTP front ends; each sees the peer only as its
//	                 Backend, maps errors with internal/httpserve.StatusOf
//	crdtstate        the pinset (go-ds-crdt on Badger, journal, snapshots)
//	pintracker       makes kubo hold what the pinset allocates here
//	pubsubmon        heartbeats (metrics) of every peer
//	p2p              the libp2p host, gossipsub, the table of every
//	                 protocol a peer serves (p2p/protocols.go), and the
//	                 wire format of each
//	membership       the table of cluster peers heard announcing
//	status           the merge of every peer's status stream
//	allocate, repair pure decisions: where pins go, what moves, what expires
//	adder, ecfile    UnixFS and CAR import; erasure-coded files
//	ipfsclient       kubo's RPC API; trust: write keys, tickets, envelopes
//	api              this package: types, errors, contracts
//
// Imports flow one way: cmd → peer → components → api and libraries. No
// component imports peer or an HTTP front end.
//
// Conventions every part follows:
//
//   - Errors: a component returns the domain errors of errors.go
//     (ErrNotFound, ErrBadRequest, ErrUnauthorized, ErrForbidden), wrapped
//     with what was wrong; nothing else decides a status code.
//   - Streams: a method that yields many items takes fn func(T) error and
//     calls it once per item, in order, from one goroutine; it stops at the
//     first error fn returns and returns it. (Producers may run goroutines
//     and channels inside; none crosses a contract.)
//   - Context: every method that may block takes ctx first and returns
//     when it is done.
//   - Concurrency: every Backend method may be called from many goroutines
//     at once.
//   - Lifecycle: a component is built by New, which starts what it runs
//     (crdtstate.State, p2p.Node, pubsubmon.Monitor, peer.Peer), and stopped by
//     Close, which may be called more than once and returns once its
//     goroutines have ended. Two differ, for a reason: pintracker.Tracker
//     is started apart (Start), once the pinset it reads is open, and an
//     HTTP server (internal/httpserve) is bound by New (so a taken port
//     fails start-up), served by Start once the peer is wired, and stopped
//     by Shutdown(ctx), which lets requests in flight finish.

// Authorizer checks a request's credentials; nil lets it through. It
// returns ErrUnauthorized (401: no, wrong, expired or revoked credentials)
// or ErrForbidden (403: a write with read-only credentials). write says
// whether the request changes anything.
type Authorizer func(r *http.Request, write bool) error

// RESTBackend is what the REST API (restapi) needs of a peer: IPFS
// Cluster's REST API, plus Pinring's additions.
type RESTBackend interface {
	ID(ctx context.Context) ID
	Peers(ctx context.Context, fn func(ID) error) error
	Pin(ctx context.Context, p Pin) (Pin, error)
	Unpin(ctx context.Context, c Cid) (Pin, error)
	// ResolvePath turns /ipfs/..., /ipns/... or /ipld/... into a CID.
	ResolvePath(ctx context.Context, path string) (Cid, error)
	PinGet(ctx context.Context, c Cid) (Pin, error)
	Pins(ctx context.Context, fn func(Pin) error) error
	Status(ctx context.Context, c Cid, local bool) (GlobalPinInfo, error)
	StatusAll(ctx context.Context, filter StatusFilter, local bool, fn func(GlobalPinInfo) error) error
	Recover(ctx context.Context, c Cid, local bool) (GlobalPinInfo, error)
	RecoverAll(ctx context.Context, local bool, fn func(GlobalPinInfo) error) error
	Digest(ctx context.Context) (StateDigest, error)
	Health(ctx context.Context) Health
	// Graph is the cluster's connectivity as this peer knows it.
	Graph(ctx context.Context) Graph
	// Leave makes the peer leave the cluster when id is its own ID.
	Leave(ctx context.Context, id peer.ID) error
	// Add imports the entries of an upload and pins the root; progress is
	// called for each file and directory, the root last.
	Add(ctx context.Context, files iter.Seq2[AddEntry, error], ap AddParams, progress func(AddedOutput) error) (Cid, error)
	// ECGet writes the original bytes of an erasure-coded file to w.
	ECGet(ctx context.Context, c Cid, w io.Writer) error
	// ECRepair rebuilds the lost shards of one erasure-coded file (nil:
	// every file this peer is in charge of).
	ECRepair(ctx context.Context, c *Cid) ([]ECRepair, error)
	// MetricNames lists the metric names peers publish.
	MetricNames(ctx context.Context) []string
	// Metrics returns the latest valid metric called name of every peer.
	Metrics(ctx context.Context, name string) []Metric
	// Alerts returns the alerts raised (peers whose metrics expired).
	Alerts(ctx context.Context) []Alert
	// RepoGC runs kubo's garbage collection on this peer (local) or on
	// every peer.
	RepoGC(ctx context.Context, local bool) (GlobalRepoGC, error)
	// Bandwidth is this peer's libp2p traffic by protocol.
	Bandwidth(ctx context.Context) map[string]Bandwidth
	// Audit challenges the peers a pin is allocated to (every peer it
	// knows, for a pin on every peer; only pid when defined) to prove they
	// hold it, as this writer.
	Audit(ctx context.Context, c Cid, pid peer.ID) ([]AuditResult, error)
	// Admissions lists the writers' admission records.
	Admissions(ctx context.Context) ([]Admission, error)
	// SetAdmission admits pid (revoke false) or revokes it, as this
	// writer (ErrForbidden at a follower).
	SetAdmission(ctx context.Context, pid peer.ID, revoke bool, note string) (Admission, error)
}

// PinningBackend is what the IPFS Pinning Service API (restapi/pinsvc)
// needs of a peer.
type PinningBackend interface {
	Pin(ctx context.Context, pin Pin) (Pin, error)
	// Replace pins to, then removes from unless it is the same CID.
	Replace(ctx context.Context, from Cid, to Pin) (Pin, error)
	Unpin(ctx context.Context, c Cid) (Pin, error)
	PinGet(ctx context.Context, c Cid) (Pin, error)
	// Status is the cluster-wide status of one CID.
	Status(ctx context.Context, c Cid, local bool) (GlobalPinInfo, error)
	// StatusAll calls fn with the cluster-wide status of every pin.
	StatusAll(ctx context.Context, filter StatusFilter, local bool, fn func(GlobalPinInfo) error) error
	// ID gives this peer's kubo addresses (delegates of last resort).
	ID(ctx context.Context) ID
	// SwarmConnect asks this peer's kubo to connect to addrs (origins).
	SwarmConnect(ctx context.Context, addrs ...ma.Multiaddr) error
}

// ProxyBackend is what the IPFS proxy (restapi/ipfsproxy) needs of a
// peer; every call the proxy does not answer goes to kubo.
type ProxyBackend interface {
	Pin(ctx context.Context, pin Pin) (Pin, error)
	// Replace pins to, then removes from unless it is the same CID.
	Replace(ctx context.Context, from Cid, to Pin) (Pin, error)
	Unpin(ctx context.Context, c Cid) (Pin, error)
	PinGet(ctx context.Context, c Cid) (Pin, error)
	// Pins calls fn with every pin of the pinset.
	Pins(ctx context.Context, fn func(Pin) error) error
	ResolvePath(ctx context.Context, path string) (Cid, error)
	Status(ctx context.Context, c Cid, local bool) (GlobalPinInfo, error)
	// RepoStats are every live peer's kubo repo size and StorageMax.
	RepoStats(ctx context.Context) []IPFSRepoStat
}
