package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
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
