package p2p

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// A peer that a busy peer prunes from its gossipsub mesh does not connect
// to the peers the pruning one suggests (gossipsub's peer exchange, off):
// the ring chooses what a peer keeps connected (membership: the writers
// and 32 members). With it on, every prune on every topic added
// connections that nothing closed, and they grew with the ring: 149 a
// follower at 305 peers in the ring harness, 57 without. A hub that does
// send suggestions (another build, a stranger) gets none followed either.
func TestPrunedPeersDoNotDialSuggestedPeers(t *testing.T) {
	for _, hubPX := range []bool{false, true} {
		t.Run(fmt.Sprintf("hub sends suggestions %v", hubPX), func(t *testing.T) { prunedPeers(t, hubPX) })
	}
}

func prunedPeers(t *testing.T, hubPX bool) {
	nodes, _ := star(t, 17, func(cfg *Config) {
		if hubPX {
			cfg.PubSubOptions = []pubsub.Option{pubsub.WithPeerExchange(true)}
		}
	})
	leaves := nodes[1:]
	// The hub's mesh holds at most Dhi (12) of the 16 leaves: it prunes
	// some at each heartbeat (every second); give it several.
	time.Sleep(5 * time.Second)
	for i, l := range leaves {
		if n := len(l.Host.Network().Peers()); n != 1 {
			t.Errorf("leaf %d has %d connections, want only the hub", i, n)
		}
	}
}

// ihaveCounter counts the IHAVE control messages a node sends.
type ihaveCounter struct{ n atomic.Int64 }

func (c *ihaveCounter) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	if rpc.GetControl() != nil && len(rpc.GetControl().GetIhave()) > 0 {
		c.n.Add(1)
	}
}
func (*ihaveCounter) AddPeer(peer.ID, protocol.ID)                         {}
func (*ihaveCounter) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*ihaveCounter) OnClosedOutboundStream(peer.ID)                       {}
func (*ihaveCounter) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*ihaveCounter) RemovePeer(peer.ID)                                   {}
func (*ihaveCounter) Join(string)                                          {}
func (*ihaveCounter) Leave(string)                                         {}
func (*ihaveCounter) Graft(peer.ID, string)                                {}
func (*ihaveCounter) Prune(peer.ID, string)                                {}
func (*ihaveCounter) ValidateMessage(*pubsub.Message)                      {}
func (*ihaveCounter) DeliverMessage(*pubsub.Message)                       {}
func (*ihaveCounter) RejectMessage(*pubsub.Message, string)                {}
func (*ihaveCounter) DuplicateMessage(*pubsub.Message)                     {}
func (*ihaveCounter) ThrottlePeer(peer.ID)                                 {}
func (*ihaveCounter) RecvRPC(*pubsub.RPC)                                  {}
func (*ihaveCounter) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*ihaveCounter) UndeliverableMessage(*pubsub.Message)                 {}

// A follower gossips message IDs to 3 peers a topic a second
// (FollowerGossip), where a writer gossips to a quarter of the peers it
// knows, at least 6: a hub connected to 24 peers that publish all along
// sends IHAVE to at most 3 of them a heartbeat as a follower, more as a
// writer.
func TestAFollowerGossipsToFewPeers(t *testing.T) {
	for _, follower := range []bool{true, false} {
		t.Run(fmt.Sprintf("follower %v", follower), func(t *testing.T) {
			ctx := context.Background()
			count := &ihaveCounter{}
			_, topics := star(t, 25, func(cfg *Config) {
				cfg.Follower = follower
				cfg.PubSubOptions = []pubsub.Option{pubsub.WithRawTracer(count)}
			})
			time.Sleep(2 * time.Second) // meshes form
			count.n.Store(0)
			began := time.Now()
			for i := 0; time.Since(began) < 4*time.Second; i++ {
				topics[1+i%24].Publish(ctx, fmt.Appendf(nil, "m%d", i))
				time.Sleep(50 * time.Millisecond)
			}
			perBeat := float64(count.n.Load()) / time.Since(began).Seconds()
			t.Logf("follower %v: %.1f IHAVE sends a heartbeat", follower, perBeat)
			if follower && perBeat > 3.5 {
				t.Fatalf("a follower sent IHAVE to %.1f peers a heartbeat, want at most 3", perBeat)
			}
			if !follower && perBeat <= 3.5 {
				t.Fatalf("a writer sent IHAVE to %.1f peers a heartbeat: the test cannot tell a follower from it", perBeat)
			}
		})
	}
}

// star starts n nodes on mocknet, any able to dial any other, the others
// connected to the first (the hub) only, every one subscribed to topic
// "t"; hub, when not nil, adjusts the hub's config.
func star(t *testing.T, n int, hub func(*Config)) ([]*Node, []*pubsub.Topic) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var nodes []*Node
	var topics []*pubsub.Topic
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i)))
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Key: sk, Host: h, Store: dssync.MutexWrap(ds.NewMapDatastore()), BlocksNamespace: "/blocks"}
		if i == 0 && hub != nil {
			hub(&cfg)
		}
		node, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		nodes = append(nodes, node)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, l := range nodes[1:] {
		if _, err := mn.ConnectPeers(l.Host.ID(), nodes[0].Host.ID()); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range nodes {
		topic, err := node.PubSub.Join("t")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := topic.Subscribe(); err != nil {
			t.Fatal(err)
		}
		topics = append(topics, topic)
	}
	return nodes, topics
}
