package p2p

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Caller is who may open a protocol's streams.
type Caller string

const (
	// AnyPeer: any peer that can connect (in a private ring, only peers
	// holding cluster.secret can); what it gets is public to the ring.
	AnyPeer Caller = "any peer"
	// Writer: a peer that proves, in the stream's first bytes, that it
	// holds a write key of this cluster (its key and the key's signature
	// over its peer ID).
	Writer Caller = "writer"
)

// Protocol declares one request/response protocol between peers: what it
// is for, who may call it, and the bounds a server enforces. The table
// below is every protocol a peer serves (gossipsub's topics aside, see
// docs/security.md).
type Protocol struct {
	ID     protocol.ID
	Does   string
	Caller Caller
	// MaxRequest is the most bytes a request's largest frame may hold.
	MaxRequest int64
	// Idle ends a stream that sends nothing for this long; Deadline ends
	// any exchange that lasts longer (0: Idle only).
	Idle, Deadline time.Duration
	// Concurrent is how many streams a peer serves at once to callers it
	// does not know; more are reset at once (or told busy). PerPeer is
	// how many of those one caller may hold (0: Concurrent). A known
	// caller (for Writer protocols, a writer already proven on the peers
	// topic) has PerPeer slots of its own outside that pool, so that
	// strangers filling it cannot keep the ring's writers out.
	Concurrent, PerPeer int
}

// The protocols, in the order a new peer meets them.
var (
	Snapshot = Protocol{ID: "/pinring/snapshot/2.0.0", Caller: AnyPeer,
		Does:       "a new, empty peer asks a writer for the whole pinset at once (blocks and entries), instead of walking the delta DAG",
		MaxRequest: 256, Idle: 5 * time.Minute, Concurrent: 2}
	DAGSync = Protocol{ID: "/pinring/dagsync/1.0.0", Caller: AnyPeer,
		Does:       "a peer behind by N deltas asks for the delta blocks from a head down to a height in one stream (every block hash-checked on arrival)",
		MaxRequest: 128, Idle: 30 * time.Second, Deadline: 10 * time.Minute, Concurrent: 32}
	Status = Protocol{ID: "/pinring/status/1.0.0", Caller: AnyPeer,
		Does:       "the status of one CID or of every pin on the asked peer (GET /pins merges every peer's)",
		MaxRequest: 4 << 10, Idle: 30 * time.Second, Deadline: 30 * time.Minute, Concurrent: 32}
	BlockPush = Protocol{ID: "/pinring/blocks/1.0.0", Caller: Writer,
		Does:       "an add's blocks pushed to the peers the pin is allocated to, into their kubos",
		MaxRequest: 4 << 20, Idle: time.Minute, Concurrent: 16, PerPeer: 8}
	RepoGC = Protocol{ID: "/pinring/repogc/1.0.0", Caller: Writer,
		Does:       "run kubo's garbage collection (POST /ipfs/gc)",
		MaxRequest: 128, Idle: time.Minute, Deadline: 30 * time.Minute, Concurrent: 4, PerPeer: 2}
	Metrics = Protocol{ID: "/pinring/metrics/1.0.0", Caller: AnyPeer,
		Does:       "a follower of a large ring, which hears the writers' heartbeats only, asks a writer for the latest metrics of every peer it hears (GET /pins and the health table at that follower)",
		MaxRequest: 1 << 10, Idle: 10 * time.Second, Deadline: time.Minute, Concurrent: 4, PerPeer: 2}
	Peers = Protocol{ID: "/pinring/peers/1.0.0", Caller: AnyPeer,
		Does:       "a peer joining a ring asks a writer it is connected to for the peers that writer is connected to (the writer proves it is one first), instead of the ring answering its join on the peers topic",
		MaxRequest: 1, Idle: 10 * time.Second, Deadline: time.Minute, Concurrent: 4, PerPeer: 1}
	Audit = Protocol{ID: "/pinring/audit/1.0.0", Caller: Writer,
		Does:       "a writer challenges a peer to prove it holds a pin: the blocks of one path from the root, chosen by a nonce, from its kubo's own blockstore (audit package)",
		MaxRequest: 128, Idle: 10 * time.Second, Deadline: time.Minute, Concurrent: 8, PerPeer: 4}
)

// Protocols is the table: every protocol a peer serves.
var Protocols = []Protocol{Snapshot, Peers, DAGSync, Status, Metrics, BlockPush, RepoGC, Audit}

// request opens a pr stream to pid, already connected, bounded by
// pr.Deadline (the stream is reset when it passes, or when the caller
// calls done), sends the request write writes, and closes the writing
// side. The caller reads the answer, then calls done and closes s.
func request(ctx context.Context, h host.Host, pid peer.ID, pr Protocol, write func(io.Writer) error) (network.Stream, context.CancelFunc, error) {
	var done context.CancelFunc
	if pr.Deadline > 0 {
		ctx, done = context.WithTimeout(ctx, pr.Deadline)
	} else {
		ctx, done = context.WithCancel(ctx)
	}
	s, err := h.NewStream(network.WithNoDial(ctx, string(pr.ID)), pid, pr.ID)
	if err != nil {
		done()
		return nil, nil, err
	}
	// The stream, not a result the returns below may set to nil (a write
	// error then had this goroutine reset a nil stream).
	go func() {
		<-ctx.Done()
		s.Reset()
	}()
	s.SetWriteDeadline(time.Now().Add(pr.Idle))
	if err := write(s); err != nil {
		s.Reset()
		done()
		return nil, nil, err
	}
	s.CloseWrite()
	return s, done, nil
}

// Serve registers handler for pr on h, with pr's bounds (its Concurrent
// and PerPeer slots; known, when not nil, says which callers have slots
// of their own): a stream beyond them goes to busy instead (nil: it is
// reset), which may say so in the protocol's own words; pr.Deadline, when
// set, bounds the whole exchange. The handler enforces the rest (its
// frames' sizes, the caller's proof, Idle), as only it knows its framing.
func Serve(h host.Host, pr Protocol, known func(peer.ID) bool, handler, busy network.StreamHandler) {
	g := newGate(pr, known)
	h.SetStreamHandler(pr.ID, func(s network.Stream) {
		from := s.Conn().RemotePeer()
		if !g.enter(from) {
			if busy == nil {
				s.Reset()
				return
			}
			s.SetDeadline(time.Now().Add(pr.Idle))
			busy(s)
			return
		}
		defer g.leave(from)
		if pr.Deadline > 0 {
			s.SetDeadline(time.Now().Add(pr.Deadline))
		}
		handler(s)
	})
}

// gate counts the streams a protocol serves: a pool of Concurrent shared
// by the callers it does not know, PerPeer each, and PerPeer for each
// known caller outside the pool.
type gate struct {
	shared, perPeer int
	known           func(peer.ID) bool

	mu     sync.Mutex
	inPool int
	by     map[peer.ID]*held // callers holding streams (none: no entry)
}

// held is one caller's streams: how many, and whether they count in the
// shared pool (where its first went).
type held struct {
	n      int
	pooled bool
}

func newGate(pr Protocol, known func(peer.ID) bool) *gate {
	shared := max(pr.Concurrent, 1)
	per := pr.PerPeer
	if per <= 0 || per > shared {
		per = shared
	}
	return &gate{shared: shared, perPeer: per, known: known, by: map[peer.ID]*held{}}
}

// enter takes a slot for a stream of pid, or says there is none.
func (g *gate) enter(pid peer.ID) bool {
	isKnown := g.known != nil && g.known(pid) // outside the lock: it may take others
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.by[pid]
	if c == nil {
		c = &held{pooled: !isKnown}
	}
	if c.n >= g.perPeer || (c.pooled && g.inPool >= g.shared) {
		return false
	}
	if c.pooled {
		g.inPool++
	}
	c.n++
	g.by[pid] = c
	return true
}

func (g *gate) leave(pid peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.by[pid]
	if c.pooled {
		g.inPool--
	}
	if c.n--; c.n <= 0 {
		delete(g.by, pid)
	}
}
