package membership

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/trust"
)

// The periodic announcements of a whole ring stay under RingPeers an
// interval: a peer's period grows with the ring once it is larger, and
// beyond LargeRing members the ring's rate falls as it grows, each peer
// announcing at least hourly.
func TestAnnouncementPeriodGrowsWithTheRing(t *testing.T) {
	for _, tc := range []struct {
		peers int
		want  time.Duration
		rate  float64 // ring-wide, a second, at most
	}{{0, 10 * time.Second, 2}, {10, 10 * time.Second, 2}, {20, 10 * time.Second, 2}, {100, 50 * time.Second, 2},
		{300, 450 * time.Second, 0.67}, {1000, time.Hour, 0.28}, {10000, time.Hour, 2.78}} {
		got := periodFor(10*time.Second, tc.peers)
		if got != tc.want {
			t.Errorf("%d peers: period %s, want %s", tc.peers, got, tc.want)
		}
		if rate := float64(tc.peers) / got.Seconds(); rate > tc.rate {
			t.Errorf("%d peers: %.2f announcements a second, over %.2f", tc.peers, rate, tc.rate)
		}
	}
	a := Announcements{Interval: 10 * time.Second, Size: func() int { return 200 }}
	if got := a.period(); got != 200*time.Second {
		t.Fatalf("Size 200: period %s, want 200s", got)
	}
}

// A join costs the ring a bounded number of announcements: in a small
// ring all members answer it (a newcomer knows a small ring at once), in a
// large one none do (the newcomer asks a writer: TestANewcomerLearnsTheRingFromAWriter).
func TestJoinAnswersDoNotGrowWithTheRing(t *testing.T) {
	for _, members := range []int{1, 5, RingPeers, RingPeers + 1, 100, 1000, 10000} {
		answers := float64(members) * joinShare(members)
		if members <= RingPeers && answers != float64(members) {
			t.Errorf("%d members: %.1f answer a join; in a small ring all do", members, answers)
		}
		if members > RingPeers && answers != 0 {
			t.Errorf("%d members, all seeing a join: %.1f answers expected, want none", members, answers)
		}
	}
}

// A peer keeps dialling every writer it hears of, but other members only
// until it keeps MaxKept peers: its connections do not grow with the ring.
func TestRingKeepsEveryWriterButBoundedMembers(t *testing.T) {
	kept := map[peer.ID]bool{}
	r := &Ring{Table: New(), Self: "self", Member: func(peer.ID) bool { return true },
		Keeping: func() int { return len(kept) },
		Connect: func(addrs ...ma.Multiaddr) {
			for _, a := range addrs {
				ai, err := peer.AddrInfoFromP2pAddr(a)
				if err != nil {
					t.Fatal(err)
				}
				kept[ai.ID] = true
			}
		}}
	id := func(i int) api.ID {
		pid := test.RandPeerIDFatal(t)
		return api.ID{ID: pid, Addresses: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", 4000+i, pid))}}
	}
	for i := range 3 * MaxKept {
		r.saw(context.Background(), id(i))
	}
	if len(kept) != MaxKept {
		t.Fatalf("%d members heard: %d kept, want %d", 3*MaxKept, len(kept), MaxKept)
	}
	if r.Table.Len() != 3*MaxKept {
		t.Fatalf("the table holds %d peers, want all %d heard", r.Table.Len(), 3*MaxKept)
	}
	// A member over the bound is not kept; a writer always is.
	m := id(998)
	if r.saw(context.Background(), m); kept[m.ID] {
		t.Fatal("a member over MaxKept was kept")
	}
	wk, err := trust.NewWriteKey()
	if err != nil {
		t.Fatal(err)
	}
	if r.Keys, err = trust.NewKeySet([]string{wk.Public().String()}); err != nil {
		t.Fatal(err)
	}
	r.Cluster = "c"
	w := id(999)
	w.WriteKey, w.WriteKeyProof = wk.Public().String(), wk.Endorse("c", w.ID.String())
	if !r.Endorsed(w) {
		t.Fatal("the writer's endorsement is not accepted")
	}
	if r.saw(context.Background(), w); !kept[w.ID] {
		t.Fatal("a writer heard over MaxKept was not kept")
	}
}

// In a ring of more than RingPeers members an announcement carries a
// sample of SampledLinks of each list (every peer decodes every
// announcement); in a small one, every link.
func TestLargeRingAnnouncesASampleOfLinks(t *testing.T) {
	self := test.RandPeerIDFatal(t)
	var all []peer.ID
	r := &Ring{Table: New(), Self: self, Member: func(peer.ID) bool { return true },
		Keeping: func() int { return MaxKept }, Connect: func(...ma.Multiaddr) {},
		Connected: func(peer.ID) bool { return true },
		KuboPeers: func(context.Context) ([]peer.ID, error) { return nil, nil },
		Me:        func(context.Context) api.ID { return api.ID{ID: self, ClusterPeers: append([]peer.ID{self}, all...)} }}
	for n := 1; n <= 3*RingPeers; n++ {
		pid := test.RandPeerIDFatal(t)
		all = append(all, pid)
		r.saw(context.Background(), api.ID{ID: pid})
		me := r.announcement(context.Background())
		if n <= RingPeers {
			if len(me.ConnectedTo) != n || len(me.ClusterPeers) != n+1 {
				t.Fatalf("%d members: %d connected and %d cluster peers announced, want all", n, len(me.ConnectedTo), len(me.ClusterPeers))
			}
			continue
		}
		if len(me.ConnectedTo) != SampledLinks || len(me.ClusterPeers) != SampledLinks {
			t.Fatalf("%d members: %d connected and %d cluster peers announced, want %d", n, len(me.ConnectedTo), len(me.ClusterPeers), SampledLinks)
		}
		if !slices.Contains(me.ClusterPeers, self) {
			t.Fatalf("%d members: the sample of cluster peers left out the peer itself", n)
		}
	}
}
