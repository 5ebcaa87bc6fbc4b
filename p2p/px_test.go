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
	mn := mocknet.New()
	defer mn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodes []*Node
	for i := range 17 {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i)))
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Key: sk, Host: h, Store: dssync.MutexWrap(ds.NewMapDatastore()), BlocksNamespace: "/blocks"}
		if i == 0 && hubPX {
			cfg.PubSubOptions = []pubsub.Option{pubsub.WithPeerExchange(true)}
		}
		n, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	if err := mn.LinkAll(); err != nil { // any peer can dial any other
		t.Fatal(err)
	}
	hub, leaves := nodes[0], nodes[1:]
	for _, l := range leaves {
		if _, err := mn.ConnectPeers(l.Host.ID(), hub.Host.ID()); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		topic, err := n.PubSub.Join("t")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := topic.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
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
			mn := mocknet.New()
			defer mn.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var nodes []*Node
			var topics []*pubsub.Topic
			count := &ihaveCounter{}
			for i := range 25 {
				sk, _, err := crypto.GenerateEd25519Key(nil)
				if err != nil {
					t.Fatal(err)
				}
				h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i)))
				if err != nil {
					t.Fatal(err)
				}
				cfg := Config{Key: sk, Host: h, Store: dssync.MutexWrap(ds.NewMapDatastore()), BlocksNamespace: "/blocks"}
				if i == 0 {
					cfg.Follower = follower
					cfg.PubSubOptions = []pubsub.Option{pubsub.WithRawTracer(count)}
				}
				n, err := New(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Close() })
				nodes = append(nodes, n)
				topic, err := n.PubSub.Join("t")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := topic.Subscribe(); err != nil {
					t.Fatal(err)
				}
				topics = append(topics, topic)
			}
			if err := mn.LinkAll(); err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes[1:] {
				if _, err := mn.ConnectPeers(n.Host.ID(), nodes[0].Host.ID()); err != nil {
					t.Fatal(err)
				}
			}
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
