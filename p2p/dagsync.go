package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	crdt "github.com/ipfs/go-ds-crdt"
	"github.com/ipfs/go-ds-crdt/pb"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/trust"
)

// DAGSync (protocols.go) asks: "send me the delta blocks reachable from
// this head, down to this height".
// Any cluster peer may call it; it only serves blocks that bitswap would
// serve anyway, every one verified by hash on arrival.
//
// Why: go-ds-crdt walks a chain of deltas one block at a time and bitswap
// holds each want ≥ 20 ms, so a peer that is behind by N deltas needs at
// least N×20 ms. Streaming the chain in one request removes the round
// trips; the CRDT then finds the blocks locally.
const (
	maxBlockSize  = 4 << 20
	maxSyncBlocks = 10_000_000
)

// serveDAGSync answers one request: [uvarint len][head CID][uvarint above],
// then streams [uvarint len][CID][uvarint len][block] for every delta block
// reachable from head whose height is above `above`, newest first.
func (n *Node) serveDAGSync(s network.Stream) {
	defer s.Close()
	r := bufio.NewReader(s)
	headBytes, err := frame.Read(r, uint64(DAGSync.MaxRequest))
	if err != nil {
		s.Reset()
		return
	}
	head, err := cid.Cast(headBytes)
	if err != nil {
		s.Reset()
		return
	}
	above, err := binary.ReadUvarint(r)
	if err != nil {
		s.Reset()
		return
	}
	w := bufio.NewWriterSize(s, 64<<10)
	ctx := n.lifetime
	queue := []cid.Cid{head}
	seen := map[cid.Cid]bool{head: true}
	sent := 0
	for len(queue) > 0 && sent < maxSyncBlocks {
		c := queue[0]
		queue = queue[1:]
		blk, err := n.bstore.Get(ctx, c)
		if err != nil {
			continue // not here: the requester's bitswap will find it
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			continue
		}
		var delta pb.Delta
		if err := proto.Unmarshal(nd.Data(), &delta); err != nil {
			continue
		}
		if delta.GetPriority() <= above && c != head {
			continue // the requester has this height already
		}
		if frame.Write(w, c.Bytes()) != nil || frame.Write(w, blk.RawData()) != nil {
			s.Reset()
			return
		}
		sent++
		for _, l := range nd.Links() {
			if !seen[l.Cid] {
				seen[l.Cid] = true
				queue = append(queue, l.Cid)
			}
		}
	}
	if err := w.Flush(); err != nil {
		s.Reset()
	}
}

// Bounds of one chain fetch: past them the fetch stops, and go-ds-crdt
// fetches the rest through bitswap, block by block.
const (
	maxFetchBlocks = 1_000_000
	maxFetchBytes  = 1 << 30
	// relayerDeadline bounds a fetch from a peer that is not a writer
	// (a follower relaying an envelope): the fetch holds up go-ds-crdt's
	// head processing while it lasts.
	relayerDeadline = time.Minute
)

// fetchChain asks from for the blocks above height `above` reachable from
// head and stores them locally, within deadline. It takes only what it
// asked for: the head, then blocks linked from blocks it took (a server
// sends them in that order), each checked against its CID and decoded as a
// delta node; anything else ends the fetch, as does passing maxFetchBlocks
// or maxFetchBytes. It returns how many blocks it stored.
func (n *Node) fetchChain(ctx context.Context, from peer.ID, head cid.Cid, above uint64, deadline time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	s, err := n.Host.NewStream(ctx, from, DAGSync.ID)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(DAGSync.Idle))
	w := bufio.NewWriter(s)
	var buf [binary.MaxVarintLen64]byte
	if err := frame.Write(w, head.Bytes()); err != nil {
		return 0, err
	}
	if _, err := w.Write(buf[:binary.PutUvarint(buf[:], above)]); err != nil {
		return 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	s.CloseWrite()
	r := bufio.NewReaderSize(s, 64<<10)
	stored, bytes := 0, 0
	wanted := map[cid.Cid]bool{head: true}
	var batch []blocks.Block
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := n.bstore.PutMany(ctx, batch)
		stored += len(batch)
		batch = batch[:0]
		return err
	}
	for {
		if ctx.Err() != nil {
			return stored, ctx.Err() // the total bound
		}
		s.SetReadDeadline(time.Now().Add(DAGSync.Idle)) // idle, not total
		cb, err := frame.Read(r, 128)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stored, err
		}
		data, err := frame.Read(r, maxBlockSize)
		if err != nil {
			return stored, err
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return stored, err
		}
		if !wanted[c] {
			return stored, fmt.Errorf("dagsync: %s sent block %s, which is not reachable from head %s", from, c, head)
		}
		sum, err := c.Prefix().Sum(data)
		if err != nil || !sum.Equals(c) {
			return stored, fmt.Errorf("dagsync: block %s from %s does not match its hash", c, from)
		}
		nd, err := merkledag.DecodeProtobuf(data)
		if err != nil {
			return stored, fmt.Errorf("dagsync: block %s from %s is not a delta node: %w", c, from, err)
		}
		delete(wanted, c)
		for _, l := range nd.Links() {
			if len(wanted) < maxFetchBlocks {
				wanted[l.Cid] = true
			}
		}
		blk, _ := blocks.NewBlockWithCid(data, c)
		batch = append(batch, blk)
		bytes += len(data)
		if stored+len(batch) >= maxFetchBlocks || bytes >= maxFetchBytes {
			logger.Infof("dagsync from %s stopped at %d blocks, %d MiB: bitswap fetches the rest", from, stored+len(batch), bytes>>20)
			break
		}
		if len(batch) == 256 {
			if err := flush(); err != nil {
				return stored, err
			}
		}
	}
	return stored, flush()
}

// Broadcaster announces CRDT heads on a gossipsub topic, each
// announcement sealed in an envelope signed by a write key. A topic
// validator drops unsigned, badly signed, wrong-cluster and replayed
// envelopes before go-ds-crdt sees them. When an announcement names a head
// this peer lacks, it first fetches the missing chain from the announcing
// peer with DAGSync, so that go-ds-crdt then walks it from the local
// blockstore.
//
// A peer without a write key (a follower) announces nothing of its own: it
// relays the newest valid envelope of each origin to peers that join the
// topic, and now and then to all, so a ring keeps syncing while every
// writer is offline — only then (writersAway).
type Broadcaster struct {
	node     *Node
	topic    *pubsub.Topic
	sub      *pubsub.Subscription
	signer   *trust.Signer
	verifier *trust.Verifier
	// Height reports the local CRDT's highest delta; set it once the CRDT
	// store exists. nil: fetch whole chains.
	Height func() uint64
	// Trusted says which peers are writers: a chain fetch from one may
	// last DAGSync.Deadline, from anyone else relayerDeadline. nil: none.
	Trusted func(peer.ID) bool

	mu        sync.Mutex
	latest    map[string]relayed // origin → newest envelope seen or made
	relayTick int
	// firstHand is when an envelope last came from the writer that
	// sealed it (not relayed): while that is recent, a follower neither
	// relays nor greets, since the writers' rebroadcasts reach everyone.
	firstHand time.Time

	rejected, ignored atomic.Int64
	greetings         atomic.Int64 // greetings sent (tests)
	greeted           atomic.Int64 // envelopes published in greetings (tests)

	ctx    context.Context // ends with the node or at Close
	cancel context.CancelFunc
	done   chan struct{} // closed once the topic is left
}

// writersAway is how long after the last envelope heard first-hand from
// a writer a follower starts relaying and greeting: in a ring with a
// writer online, followers' repeats would only multiply every peer's
// traffic by its neighbours.
const writersAway = 30 * time.Second

func (b *Broadcaster) writersHeard() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writersHeardLocked()
}

func (b *Broadcaster) writersHeardLocked() bool {
	return !b.firstHand.IsZero() && time.Since(b.firstHand) < writersAway
}

// GreetGap is the least time between two greetings.
const GreetGap = time.Second

// GreetPeers: a writer with more peers than this on the heads topic does
// not greet joins (its periodic rebroadcast, every
// state.rebroadcast_interval, reaches newcomers).
const GreetPeers = 20

type relayed struct {
	seq uint64
	env []byte
}

// maxRelayed bounds how many origins' envelopes a peer keeps to relay.
const maxRelayed = 16

// relayEvery: a follower relays its envelopes on every relayEvery-th
// rebroadcast tick (30 s with the default 5 s interval).
const relayEvery = 6

var _ crdt.Broadcaster = (*Broadcaster)(nil)

// NewBroadcaster registers the envelope validator on topic, joins it and
// subscribes. signer is nil on a peer that holds no write key; verifier is
// required.
func (n *Node) NewBroadcaster(topic string, signer *trust.Signer, verifier *trust.Verifier) (*Broadcaster, error) {
	if verifier == nil {
		return nil, errors.New("broadcaster: a verifier is required")
	}
	b := &Broadcaster{node: n, signer: signer, verifier: verifier, latest: map[string]relayed{}}
	if err := n.PubSub.RegisterTopicValidator(topic, b.validate); err != nil {
		return nil, err
	}
	t, err := n.PubSub.Join(topic)
	if err != nil {
		return nil, err
	}
	if err := t.SetScoreParams(TopicScore()); err != nil {
		t.Close()
		return nil, err
	}
	sub, err := t.Subscribe()
	if err != nil {
		t.Close()
		return nil, err
	}
	events, err := t.EventHandler()
	if err != nil {
		sub.Cancel()
		t.Close()
		return nil, err
	}
	b.topic, b.sub = t, sub
	b.ctx, b.cancel = context.WithCancel(n.lifetime)
	b.done = make(chan struct{})
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		defer close(b.done)
		<-b.ctx.Done()
		events.Cancel()
		sub.Cancel()
		t.Close()
		n.PubSub.UnregisterTopicValidator(topic)
	}()
	go func() {
		defer n.wg.Done()
		b.greet(events)
	}()
	return b, nil
}

// Close leaves the topic (an epoch's pinset closed before the node is):
// Next then ends. The CRDT using b must be closed first.
func (b *Broadcaster) Close() {
	b.cancel()
	<-b.done
}

// validate is the topic validator: it checks the signature, cluster and
// key of every envelope, and refuses replays of envelopes received before
// (a peer's own publications, relays included, skip the replay check).
func (b *Broadcaster) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	own := from == b.node.Host.ID() // this peer's publication (pubsub's Message.Local means something else)
	env, err := b.verifier.Check(msg.Data, !own)
	if errors.Is(err, trust.ErrReplay) || errors.Is(err, trust.ErrFuture) {
		// Not the relayer's fault (paths, clocks): ignored, not held
		// against its score.
		logger.Debugf("heads from %s (author %s): %s", from, msg.GetFrom(), err)
		b.ignored.Add(1)
		return pubsub.ValidationIgnore
	}
	if err != nil {
		logger.Warnf("dropping a head announcement from %s (author %s): %s", from, msg.GetFrom(), err)
		b.rejected.Add(1)
		return pubsub.ValidationReject
	}
	msg.ValidatorData = env
	return pubsub.ValidationAccept
}

// Dropped counts the announcements refused so far: rejected (unsigned,
// badly signed, wrong cluster, unknown key) and ignored (replays).
func (b *Broadcaster) Dropped() (rejected, ignored int64) {
	return b.rejected.Load(), b.ignored.Load()
}

func (b *Broadcaster) remember(origin string, seq uint64, env []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.latest[origin]; ok && cur.seq >= seq {
		return
	}
	if _, ok := b.latest[origin]; !ok && len(b.latest) >= maxRelayed {
		oldest := ""
		for o, r := range b.latest {
			if oldest == "" || r.seq < b.latest[oldest].seq {
				oldest = o
			}
		}
		if b.latest[oldest].seq >= seq {
			return
		}
		delete(b.latest, oldest)
	}
	b.latest[origin] = relayed{seq: seq, env: env}
}

// greet repeats the newest envelope of every origin whenever a peer joins
// the topic, so that a new or returning peer starts syncing at once instead
// of at the next periodic rebroadcast, even when the writers are away.
//
// At most one greeting a GreetGap: peers joining together (or a stranger
// joining and leaving in a loop) get the next one, so that joins cannot
// make a peer publish without bound.
func (b *Broadcaster) greet(events *pubsub.TopicEventHandler) {
	var last time.Time
	for {
		ev, err := events.NextPeerEvent(b.ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin {
			continue
		}
		if wait := GreetGap - time.Since(last); wait > 0 {
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if b.signer == nil && b.writersHeard() {
			continue // the writers' own rebroadcasts reach the newcomer
		}
		if b.signer != nil && len(b.topic.ListPeers()) > GreetPeers {
			// A large ring: joins are many (every router reboot), and
			// each greeting reaches every peer; the newcomer has this
			// writer's heads with its next rebroadcast.
			continue
		}
		b.mu.Lock()
		envs := make([][]byte, 0, len(b.latest))
		for o, r := range b.latest {
			// A writer greets with its own heads (they hold what it
			// merged of the others'); a follower repeats every origin's.
			if b.signer == nil || o == b.signer.Origin() {
				envs = append(envs, r.env)
			}
		}
		b.mu.Unlock()
		b.greetings.Add(1)
		b.greeted.Add(int64(len(envs)))
		for _, env := range envs {
			if err := b.topic.Publish(b.ctx, env); err != nil {
				logger.Debugf("greeting %s: %s", ev.Peer, err)
			}
		}
	}
}

// Broadcast seals and publishes heads. Without a write key it announces
// nothing of its own (go-ds-crdt calls it on every rebroadcast, and only
// writers announce); it relays. A publish failure is logged, not returned: the delta is
// already committed locally, and the heads reach the others with the next
// rebroadcast or greeting (go-ds-crdt would otherwise report the commit as
// failed).
func (b *Broadcaster) Broadcast(ctx context.Context, data []byte) error {
	if b.signer == nil {
		// A follower repeats what it knows now and then (every
		// relayEvery-th rebroadcast), in case a greeting was lost while
		// the writers are away.
		b.mu.Lock()
		b.relayTick++
		relay := b.relayTick%relayEvery == 0 && !b.writersHeardLocked()
		envs := make([][]byte, 0, len(b.latest))
		for _, r := range b.latest {
			envs = append(envs, r.env)
		}
		b.mu.Unlock()
		if relay {
			for _, env := range envs {
				if err := b.topic.Publish(ctx, env); err != nil {
					logger.Debugf("relaying heads: %s", err)
				}
			}
		}
		return nil
	}
	env := b.signer.Seal(data)
	if e, err := b.verifier.Check(env, false); err == nil {
		b.remember(e.Origin, e.Seq, env)
	} else {
		// Our key is not among the cluster's write keys: the others
		// would drop this, so say why once per announcement.
		logger.Errorf("not announcing heads: %s", err)
		return nil
	}
	if err := b.topic.Publish(ctx, env); err != nil {
		logger.Debugf("announcing heads: %s (the next rebroadcast will)", err)
	}
	return nil
}

// Next returns the payload of the next valid announcement, after
// prefetching what it names.
func (b *Broadcaster) Next(ctx context.Context) ([]byte, error) {
	var msg *pubsub.Message
	var env trust.Envelope
	for {
		var err error
		msg, err = b.sub.Next(ctx)
		if err != nil {
			return nil, crdt.ErrNoMoreBroadcast
		}
		var ok bool
		if env, ok = msg.ValidatorData.(trust.Envelope); ok {
			break
		}
		// Only when the validator was unregistered: check here instead.
		if env, err = b.verifier.Check(msg.Data, false); err == nil {
			break
		}
	}
	if msg.ReceivedFrom == b.node.Host.ID() {
		return env.Payload, nil
	}
	b.remember(env.Origin, env.Seq, msg.Data)
	from := msg.GetFrom()
	if string(from) == env.Origin {
		b.mu.Lock()
		b.firstHand = time.Now()
		b.mu.Unlock()
	}
	var bc pb.CRDTBroadcast
	if proto.Unmarshal(env.Payload, &bc) == nil {
		for _, h := range bc.GetHeads() {
			c, err := cid.Cast(h.GetCid())
			if err != nil {
				continue
			}
			if has, _ := b.node.bstore.Has(ctx, c); has {
				continue
			}
			var above uint64
			if b.Height != nil {
				above = b.Height()
			}
			start := time.Now()
			deadline := relayerDeadline
			if b.Trusted != nil && b.Trusted(from) {
				deadline = DAGSync.Deadline
			}
			n, err := b.node.fetchChain(ctx, from, c, above, deadline)
			if err != nil {
				logger.Debugf("dagsync of %s from %s: %s (bitswap will fetch instead)", c, from, err)
			} else if n > 0 {
				logger.Debugf("dagsync: %d blocks from %s in %s", n, from, time.Since(start))
			}
		}
	}
	return env.Payload, nil
}
