package p2p

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/internal/frame"
)

// A relayer that answers a chain request with junk — blocks that hash
// right but are not reachable from the head asked for — gets none of them
// stored: the fetch ends at the first. Before, every such block was
// stored, with no cap on count or bytes.
func TestJunkRelayerStoresNothing(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	victim := newReplica(t, mn, tc)
	relayer, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	connectAll(t, mn)
	junk := func() blocks.Block {
		b := make([]byte, 64<<10)
		rand.Read(b)
		h, _ := mh.Sum(b, mh.SHA2_256, -1)
		blk, _ := blocks.NewBlockWithCid(b, cid.NewCidV1(cid.Raw, h))
		return blk
	}
	relayer.SetStreamHandler(DAGSync.ID, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		if _, err := frame.Read(r, 128); err != nil {
			return
		}
		if _, err := binary.ReadUvarint(r); err != nil {
			return
		}
		w := bufio.NewWriter(s)
		for range 200 { // 12.5 MiB
			blk := junk()
			if frame.Write(w, blk.Cid().Bytes()) != nil || frame.Write(w, blk.RawData()) != nil {
				return
			}
		}
		w.Flush()
	})
	head := junk().Cid() // a head the victim lacks
	n, err := victim.node.fetchChain(context.Background(), relayer.ID(), head, 0, relayerDeadline)
	if err == nil || !strings.Contains(err.Error(), "not reachable from head") || n != 0 {
		t.Fatalf("a junk chain: stored %d blocks, %v; want none stored and an error", n, err)
	}
	var stored int
	keys, _ := victim.node.bstore.AllKeysChan(context.Background())
	for range keys {
		stored++
	}
	if stored != 0 {
		t.Fatalf("%d junk blocks in the victim's blockstore", stored)
	}
}

// Twenty peers joining the heads topic at once make a peer greet (repeat
// its newest envelopes) a few times, not twenty: greetings are at most one
// a GreetGap. Before, each join made every peer publish every envelope it
// kept.
func TestJoinFloodIsGreetedAtARate(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	r := newReplica(t, mn, tc)
	if err := r.state.Add(context.Background(), pinN(1)); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, tp := headsJoiner(t, mn)
		if _, err := tp.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	connectAll(t, mn)
	time.Sleep(1500 * time.Millisecond)
	took := time.Since(start)
	if n, most := r.bcast.greetings.Load(), int64(took/GreetGap)+2; n > most {
		t.Fatalf("%d greetings in %s for 20 joins; want at most %d", n, took.Round(time.Millisecond), most)
	}
	t.Logf("20 joins in %s: %d greetings", took.Round(time.Millisecond), r.bcast.greetings.Load())
}

// A writer greets a joining peer with its own newest envelope only (not
// every origin's it keeps: the other writers greet for themselves), and
// not at all once more than GreetPeers peers share the topic: in a large
// ring joins are many and every greeting reaches every peer, while the
// writer's rebroadcast reaches a newcomer within an interval anyway.
// Before, a writer greeted every join with every origin's envelope.
func TestWriterGreetsWithItsOwnHeadsInSmallRingsOnly(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	w1, w2 := newReplica(t, mn, tc), newReplica(t, mn, tc)
	connectAll(t, mn)
	for i, w := range []*replica{w1, w2} {
		if err := w.state.Add(context.Background(), pinN(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 2, w1, w2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w1.bcast.mu.Lock()
		origins := len(w1.bcast.latest)
		w1.bcast.mu.Unlock()
		if origins == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer keeps %d origins' envelopes, want both writers'", origins)
		}
		time.Sleep(50 * time.Millisecond)
	}
	join := func(n int) {
		t.Helper()
		for range n {
			_, tp := headsJoiner(t, mn)
			if _, err := tp.Subscribe(); err != nil {
				t.Fatal(err)
			}
		}
		connectAll(t, mn)
		time.Sleep(2 * GreetGap)
	}
	g0, e0 := w1.bcast.greetings.Load(), w1.bcast.greeted.Load()
	join(1)
	if g, e := w1.bcast.greetings.Load()-g0, w1.bcast.greeted.Load()-e0; g == 0 || e != g {
		t.Fatalf("a join in a small ring: %d greetings of %d envelopes; want some, each of the writer's own envelope only", g, e)
	}
	join(GreetPeers) // now more than GreetPeers share the topic
	before := w1.bcast.greetings.Load()
	join(1)
	if n := w1.bcast.greetings.Load() - before; n != 0 {
		t.Fatalf("with %d peers on the topic the writer greeted a join %d times; want none", len(w1.bcast.topic.ListPeers()), n)
	}
}

// A peer that floods a topic with messages its validator rejects loses
// its gossipsub score and is graylisted (none of its messages is read any
// more) within seconds. Before, there was no scoring: it was read for
// ever, every message validated.
func TestFloodingPeerIsGraylisted(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	r := newReplica(t, mn, tc)
	h, tp := headsJoiner(t, mn)
	connectAll(t, mn)
	time.Sleep(500 * time.Millisecond) // the mesh forms
	for i := range 50 {
		if err := tp.Publish(context.Background(), fmt.Appendf(nil, "not an envelope %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.node.Score(h.ID()) > graylistThreshold {
		if time.Now().After(deadline) {
			t.Fatalf("the flooder's score is %.0f after 50 rejected messages, want under %d", r.node.Score(h.ID()), graylistThreshold)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the flooder's score after 50 rejected messages: %.0f (graylisted under %d)", r.node.Score(h.ID()), graylistThreshold)
}

// headsJoiner is a new mocknet host, with plain gossipsub, joined to the
// test cluster's heads topic (not connected yet).
func headsJoiner(t *testing.T, mn mocknet.Mocknet) (host.Host, *pubsub.Topic) {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsub.NewGossipSub(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join("/pinring/test/heads")
	if err != nil {
		t.Fatal(err)
	}
	return h, tp
}

// A follower that hears a writer first-hand neither greets newcomers nor
// relays: the writer's own rebroadcasts reach them. Once the writers are
// away (nothing first-hand for writersAway), it greets again. Before, every
// follower greeted every join and relayed every 30 s whatever the writers
// did, which made each peer's heads traffic grow with its neighbours.
func TestFollowersStayQuietWhileAWriterIsHeard(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	w := newReplica(t, mn, tc)
	f := newReplicaWith(t, mn, tc.name, nil, tc.keys)
	connectAll(t, mn)
	if err := w.state.Add(context.Background(), pinN(1)); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 1, w, f)
	if !f.bcast.writersHeard() {
		t.Fatal("the follower synced from the writer but did not count it as heard first-hand")
	}
	join := func() {
		t.Helper()
		_, tp := headsJoiner(t, mn)
		if _, err := tp.Subscribe(); err != nil {
			t.Fatal(err)
		}
		connectAll(t, mn)
		time.Sleep(1500 * time.Millisecond)
	}
	before := f.bcast.greetings.Load()
	join()
	if n := f.bcast.greetings.Load() - before; n != 0 {
		t.Fatalf("the follower greeted a newcomer %d times while the writer was heard", n)
	}
	// The writer goes away: nothing first-hand since writersAway.
	w.stop()
	f.bcast.mu.Lock()
	f.bcast.firstHand = time.Now().Add(-writersAway - time.Second)
	f.bcast.mu.Unlock()
	before = f.bcast.greetings.Load()
	join()
	if n := f.bcast.greetings.Load() - before; n == 0 {
		t.Fatal("with the writers away, the follower did not greet a newcomer")
	}
}
