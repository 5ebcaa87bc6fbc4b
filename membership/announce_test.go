package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// heard records the announcements one peer heard, by peer name.
type heard struct {
	mu    sync.Mutex
	names map[string]api.ID
}

func (h *heard) add(_ context.Context, id api.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names[id.Peername] = id
}

func (h *heard) has(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.names[name]
	return ok
}

// Two peers learn of each other from their announcements; a third, which
// announces itself honestly but also publishes an announcement naming
// another peer and one that is not JSON, is heard only as itself.
func TestAnnouncementsAreHeardOnlyFromThePeerTheyName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	mn, err := mocknet.FullMeshConnected(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mn.Close() })
	hs := mn.Hosts()
	topics := make([]*pubsub.Topic, len(hs))
	for i, h := range hs {
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if topics[i], err = ps.Join("/pinring/test/peers"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	heards := []*heard{{names: map[string]api.ID{}}, {names: map[string]api.ID{}}}
	for i, name := range []string{"a", "b"} {
		a := Announcements{Topic: topics[i], Self: hs[i].ID(), Interval: 100 * time.Millisecond, Heard: heards[i].add,
			Me: func(context.Context) api.ID { return api.ID{ID: hs[i].ID(), Peername: name} }}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	testkit.WaitFor(t, 10*time.Second, "a and b hear each other", func() bool {
		return heards[0].has("b") && heards[1].has("a")
	})
	liar := topics[2]
	publish := func(v any) {
		b, _ := json.Marshal(v)
		if err := liar.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	publish(api.ID{ID: hs[0].ID(), Peername: "forged"}) // names a
	if err := liar.Publish(ctx, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	publish(api.ID{ID: hs[2].ID(), Peername: "liar"})
	testkit.WaitFor(t, 10*time.Second, "b hears the liar as itself", func() bool { return heards[1].has("liar") })
	for i, h := range heards {
		if h.has("forged") {
			t.Fatalf("peer %d took an announcement naming a from another peer", i)
		}
	}
	heards[1].mu.Lock()
	defer heards[1].mu.Unlock()
	if id := heards[1].names["a"]; id.ID != hs[0].ID() {
		t.Fatalf("b knows a as %s", id.ID)
	}
}

// A peer answers the join of a peer it has not heard of (a newcomer
// learns of it within a second), not that of a peer it knows (a
// reconnection after a router's reboot): each answer reaches the whole
// ring.
func TestOnlyUnknownPeersJoiningAreAnswered(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("known=%v", known), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			mn := mocknet.New()
			t.Cleanup(func() { mn.Close() })
			var hs []host.Host
			var topics []*pubsub.Topic
			for range 2 {
				h, err := mn.GenPeer()
				if err != nil {
					t.Fatal(err)
				}
				ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true)) // as p2p sets it
				if err != nil {
					t.Fatal(err)
				}
				tp, err := ps.Join("/pinring/test/peers")
				if err != nil {
					t.Fatal(err)
				}
				hs, topics = append(hs, h), append(topics, tp)
			}
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })
			heard := &heard{names: map[string]api.ID{}}
			// a announces once an hour, and on joins; b only listens.
			a := Announcements{Topic: topics[0], Self: hs[0].ID(), Interval: time.Hour, Heard: func(context.Context, api.ID) {},
				Me:    func(context.Context) api.ID { return api.ID{ID: hs[0].ID(), Peername: "a"} },
				Known: func(peer.ID) bool { return known }}
			wg.Go(func() { a.Run(ctx) })
			record(ctx, t, &wg, topics[1], heard)
			time.Sleep(200 * time.Millisecond) // a's first announcement goes to nobody
			if err := mn.LinkAll(); err != nil {
				t.Fatal(err)
			}
			if _, err := mn.ConnectPeers(hs[0].ID(), hs[1].ID()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) && !heard.has("a") {
				time.Sleep(50 * time.Millisecond)
			}
			if got := heard.has("a"); got == known {
				t.Fatalf("b joining, known to a: %v; b heard a's announcement: %v", known, got)
			}
		})
	}
}

// In a ring of more than RingPeers members a follower's first
// announcement — its join — reaches the writers only (the joins topic);
// its next ones, and a writer's, every peer, the next one not before half
// its period (the peers it connected to before it knew the ring's size
// joined its topics: not answered). In a small ring the join reaches
// every peer.
func TestAJoinInALargeRingReachesTheWritersOnly(t *testing.T) {
	for _, members := range []int{RingPeers + 5, RingPeers} {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			mn := mocknet.New() // connected once gossipsub runs on all three
			t.Cleanup(func() { mn.Close() })
			hs, all := joinedHosts(ctx, t, mn, 3) // a writer, a follower, a newcomer
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })
			heards := []*heard{{names: map[string]api.ID{}}, {names: map[string]api.ID{}}}
			// The newcomer has learnt the ring's size once it sees the
			// others on the peers topic (its first announcement is not
			// lost to a subscription not yet heard).
			settled := make(chan struct{})
			var peersTopic *pubsub.Topic
			var mu sync.Mutex
			var said []time.Time
			for i, h := range hs {
				topics := all[i]
				a := Announcements{Topic: topics.Peers, Joins: topics.Joins, Writer: i == 0, Settled: settled,
					Self: h.ID(), Interval: time.Hour, Heard: func(context.Context, api.ID) {},
					Me: func(context.Context) api.ID { return api.ID{ID: h.ID(), Peername: fmt.Sprintf("peer%d", i)} }}
				peersTopic = topics.Peers
				switch i {
				case 0, 1:
					a.Heard = heards[i].add
				case 2: // the newcomer, in a ring of members peers (known once settled)
					a.Size = func() int {
						select {
						case <-settled:
							return members
						default:
							return 0
						}
					}
					a.Interval = 2 * time.Second
					a.Me = func(context.Context) api.ID {
						mu.Lock()
						defer mu.Unlock()
						said = append(said, time.Now())
						return api.ID{ID: h.ID(), Peername: fmt.Sprintf("newcomer%d", len(said))}
					}
				}
				wg.Go(func() {
					if err := a.Run(ctx); err != nil {
						t.Error(err)
					}
				})
			}
			if err := mn.LinkAll(); err != nil {
				t.Fatal(err)
			}
			if err := mn.ConnectAllButSelf(); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, "the newcomer sees both on the peers topic", func() bool {
				return len(peersTopic.ListPeers()) == 2
			})
			close(settled)
			testkit.WaitFor(t, 10*time.Second, "the follower hears the writer", func() bool { return heards[1].has("peer0") })
			testkit.WaitFor(t, 10*time.Second, "the writer hears the join", func() bool { return heards[0].has("newcomer1") })
			testkit.WaitFor(t, 10*time.Second, "the follower hears the next announcement", func() bool { return heards[1].has("newcomer2") })
			if got, want := heards[1].has("newcomer1"), members <= RingPeers; got != want {
				t.Fatalf("a ring of %d: the follower heard the newcomer's join: %v, want %v", members, got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if half := periodFor(2*time.Second, members) / 2; members > RingPeers && said[1].Sub(said[0]) < half {
				t.Fatalf("the newcomer's second announcement came %s after its join, want at least %s (half its period)",
					said[1].Sub(said[0]), half)
			}
		})
	}
}

// A newcomer that does not know the ring's size yet (no writer answered
// it) answers no join: in a large ring, the peers that connect to it in
// its first seconds would each have it announce to every peer. Its join
// still reaches the writer.
func TestANewcomerAnswersNoJoinBeforeItKnowsTheRing(t *testing.T) {
	old := settleWait
	settleWait = 100 * time.Millisecond
	t.Cleanup(func() { settleWait = old })
	ctx, cancel := context.WithCancel(context.Background())
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	hs, topics := joinedHosts(ctx, t, mn, 4) // a writer, a follower, the newcomer, a latecomer
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	writer := &heard{names: map[string]api.ID{}}
	others := &heard{names: map[string]api.ID{}}
	w := Announcements{Topic: topics[0].Peers, Joins: topics[0].Joins, Writer: true, Self: hs[0].ID(), Interval: time.Hour,
		Heard: writer.add, Me: func(context.Context) api.ID { return api.ID{ID: hs[0].ID(), Peername: "writer"} }}
	n := Announcements{Topic: topics[2].Peers, Joins: topics[2].Joins, Settled: make(chan struct{}), Self: hs[2].ID(),
		Interval: time.Hour, Heard: func(context.Context, api.ID) {}, Size: func() int { return 0 },
		Me: func(context.Context) api.ID { return api.ID{ID: hs[2].ID(), Peername: "newcomer"} }}
	for _, a := range []Announcements{w, n} {
		wg.Go(func() { a.Run(ctx) })
	}
	for _, i := range []int{1, 3} { // the follower and the latecomer listen
		record(ctx, t, &wg, topics[i].Peers, others)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
		if _, err := mn.ConnectPeers(hs[pair[0]].ID(), hs[pair[1]].ID()); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "the writer hears the newcomer's join", func() bool { return writer.has("newcomer") })
	// The latecomer connects to the newcomer and joins its topic.
	if _, err := mn.ConnectPeers(hs[3].ID(), hs[2].ID()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the newcomer sees the latecomer join", func() bool {
		return slices.Contains(topics[2].Peers.ListPeers(), hs[3].ID())
	})
	time.Sleep(2500 * time.Millisecond) // an answer comes within a second
	if others.has("newcomer") {
		t.Fatal("a newcomer that does not know the ring's size answered a join")
	}
}

// joinedHosts makes n hosts on mn, not connected, each running gossipsub
// (flood publish, as p2p sets it) with the membership topics joined.
func joinedHosts(ctx context.Context, t *testing.T, mn mocknet.Mocknet, n int) ([]host.Host, []Topics) {
	t.Helper()
	var hs []host.Host
	var topics []Topics
	for range n {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true))
		if err != nil {
			t.Fatal(err)
		}
		tp, err := JoinTopics(ps, "/pinring/test", nil)
		if err != nil {
			t.Fatal(err)
		}
		hs, topics = append(hs, h), append(topics, tp)
	}
	return hs, topics
}

// record subscribes to topic and adds every announcement it delivers to
// h, until ctx ends.
func record(ctx context.Context, t *testing.T, wg *sync.WaitGroup, topic *pubsub.Topic, h *heard) {
	t.Helper()
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			var id api.ID
			if json.Unmarshal(msg.Data, &id) == nil {
				h.add(ctx, id)
			}
		}
	})
}
