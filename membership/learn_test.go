package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/trust"
)

// A newcomer asks the peers it is connected to for the ring's peers until
// a writer answers; it records what the writer passed on, each entry
// checked as an announcement (one whose address names another peer is
// refused; itself and a peer it knows already are left as they are), keeps
// every writer and MaxKept members chosen at random, has its kubo dial
// theirs (no other), and stops asking.
func TestANewcomerLearnsTheRingFromAWriter(t *testing.T) {
	wk, err := trust.NewWriteKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := trust.NewKeySet([]string{wk.Public().String()})
	if err != nil {
		t.Fatal(err)
	}
	kubos := map[peer.ID]peer.ID{} // a peer's kubo → the peer
	id := func(pid peer.ID, port int) api.ID {
		kubo := test.RandPeerIDFatal(t)
		kubos[kubo] = pid
		return api.ID{ID: pid, Peername: fmt.Sprintf("p%d", port),
			Addresses: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, pid))},
			IPFS:      api.IPFSID{ID: kubo, Addresses: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+port))}}}
	}
	self, follower, writer, known := test.RandPeerIDFatal(t), test.RandPeerIDFatal(t), test.RandPeerIDFatal(t), test.RandPeerIDFatal(t)
	w := id(writer, 1)
	w.WriteKey, w.WriteKeyProof = wk.Public().String(), wk.Endorse("c", writer.String())
	relayed := []api.ID{w, id(self, 2), id(known, 3)}
	for i := range 3 * MaxKept {
		relayed = append(relayed, id(test.RandPeerIDFatal(t), 100+i))
	}
	liar := id(test.RandPeerIDFatal(t), 4)
	liar.Addresses = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4/p2p/" + follower.String())}
	relayed = append(relayed, liar)
	var raw []json.RawMessage
	for _, x := range relayed {
		b, _ := json.Marshal(x)
		raw = append(raw, b)
	}

	newcomer := func() (*Ring, map[peer.ID]bool, map[peer.ID]int, map[peer.ID]bool) {
		var mu sync.Mutex
		kept, asked, dialled := map[peer.ID]bool{}, map[peer.ID]int{}, map[peer.ID]bool{}
		r := &Ring{Table: New(), Self: self, Cluster: "c", Keys: keys, Member: func(peer.ID) bool { return true },
			KuboID: func() api.IPFSID { return api.IPFSID{ID: test.RandPeerIDFatal(t)} },
			DialKubo: func(_ context.Context, addrs ...ma.Multiaddr) error {
				mu.Lock()
				defer mu.Unlock()
				for _, pid := range peersOf(t, addrs) {
					dialled[kubos[pid]] = true
				}
				return nil
			},
			Keeping: func() int { mu.Lock(); defer mu.Unlock(); return len(kept) },
			Connect: func(addrs ...ma.Multiaddr) {
				mu.Lock()
				defer mu.Unlock()
				for _, pid := range peersOf(t, addrs) {
					kept[pid] = true
				}
			},
			Peers: func() []peer.ID { return []peer.ID{follower, writer} },
			AskPeers: func(_ context.Context, pid peer.ID) ([]json.RawMessage, error) {
				asked[pid]++
				if pid != writer {
					return nil, fmt.Errorf("peer %s: %w", pid, p2p.ErrNotAWriter)
				}
				return append([]json.RawMessage(nil), raw...), nil
			}}
		mine := id(known, 3)
		mine.ConnectedTo = []peer.ID{follower}
		r.Table.Saw(mine, false, time.Now(), time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Learn(ctx, 10*time.Millisecond)
		if ctx.Err() != nil {
			t.Fatal("Learn did not return after the writer answered")
		}
		r.wg.Wait() // the kubo dials
		return r, kept, asked, dialled
	}
	r, kept, asked, dialled := newcomer()
	if asked[writer] != 1 || asked[follower] > 1 {
		t.Fatalf("asked %v: want the writer once and the follower at most once", asked)
	}
	if got, want := r.Table.Len(), 1+1+3*MaxKept; got != want { // the writer, known, the members
		t.Fatalf("the table holds %d peers, want %d (not itself, not the liar)", got, want)
	}
	if _, ok := r.Table.Get(liar.ID); ok {
		t.Fatal("an entry whose address names another peer was recorded")
	}
	if e, _ := r.Table.Get(known); len(e.ID.ConnectedTo) != 1 {
		t.Fatal("a relayed entry replaced what a peer announced itself")
	}
	if e, _ := r.Table.Get(writer); !e.Writer || !kept[writer] {
		t.Fatalf("the writer: recorded as writer %v, kept %v", e.Writer, kept[writer])
	}
	// Members are kept until MaxKept peers are, the writer counted if it
	// came first (as when heard on the peers topic).
	if n := len(kept) - 1; n != MaxKept && n != MaxKept-1 {
		t.Fatalf("%d members kept, want MaxKept (%d) or one less", n, MaxKept)
	}
	for _, e := range r.Table.Entries() {
		if !e.KuboDialled.IsZero() && e.ID.ID != known {
			t.Fatalf("%s's kubo counted as dialled from a relayed entry", e.ID.ID)
		}
	}
	if !maps.Equal(dialled, kept) {
		t.Fatalf("the kubos of %d peers dialled, want those of the %d kept", len(dialled), len(kept))
	}
	// Another newcomer keeps another choice of members.
	_, kept2, _, _ := newcomer()
	same := 0
	for pid := range kept2 {
		if kept[pid] {
			same++
		}
	}
	if same == len(kept) {
		t.Fatal("two newcomers kept the same members: the writer's order, not a random choice")
	}
}

// With no writer to answer, a peer asks each connected follower once (not
// again for ten minutes) and its rounds come further apart; a writer it
// then hears of is asked at the next tick.
func TestLearnDoesNotKeepAskingFollowers(t *testing.T) {
	var followers []peer.ID
	for range 10 {
		followers = append(followers, test.RandPeerIDFatal(t))
	}
	var mu sync.Mutex
	asked := map[peer.ID]int{}
	var writer peer.ID
	r := &Ring{Table: New(), Self: test.RandPeerIDFatal(t), Member: func(peer.ID) bool { return true },
		Keeping: func() int { return 0 }, Connect: func(...ma.Multiaddr) {},
		Peers: func() []peer.ID {
			mu.Lock()
			defer mu.Unlock()
			if writer != "" {
				return append(slices.Clone(followers), writer)
			}
			return followers
		},
		AskPeers: func(_ context.Context, pid peer.ID) ([]json.RawMessage, error) {
			mu.Lock()
			defer mu.Unlock()
			asked[pid]++
			if pid != writer {
				return nil, fmt.Errorf("peer %s: %w", pid, p2p.ErrNotAWriter)
			}
			return nil, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { r.Learn(ctx, 5*time.Millisecond); close(done) }()
	time.Sleep(500 * time.Millisecond) // ~100 ticks
	mu.Lock()
	total := 0
	for pid, n := range asked {
		if n > 1 {
			t.Errorf("follower %s asked %d times", pid, n)
		}
		total += n
	}
	if total != len(followers) {
		t.Errorf("%d asks, want each of the %d followers once", total, len(followers))
	}
	// A writer appears (heard on the peers topic): asked at once.
	writer = test.RandPeerIDFatal(t)
	r.Table.Saw(api.ID{ID: writer}, true, time.Now(), time.Minute)
	mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer was not asked within 5 s (the backoff's 5 min would be)")
	}
}

// A peer that fails to answer for another reason than not being a writer
// (busy: a writer serves 4 at once; a reset; a timeout) is asked again the
// next round, not ten minutes later: in a burst of joins the writers'
// slots are full, and a newcomer that gave up on them would not know the
// ring.
func TestLearnAsksABusyWriterAgain(t *testing.T) {
	writer := test.RandPeerIDFatal(t)
	var mu sync.Mutex
	asks := 0
	r := &Ring{Table: New(), Self: test.RandPeerIDFatal(t), Member: func(peer.ID) bool { return true },
		Keeping: func() int { return 0 }, Connect: func(...ma.Multiaddr) {},
		Peers: func() []peer.ID { return []peer.ID{writer} },
		AskPeers: func(context.Context, peer.ID) ([]json.RawMessage, error) {
			mu.Lock()
			defer mu.Unlock()
			if asks++; asks < 3 {
				return nil, errors.New("stream reset")
			}
			return nil, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.Learn(ctx, 5*time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("a writer busy twice was not asked a third time within 10 s (%d asks)", asks)
	}
}

// peersOf are the peers /p2p addresses name.
func peersOf(t *testing.T, addrs []ma.Multiaddr) []peer.ID {
	t.Helper()
	var out []peer.ID
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			t.Error(err)
			continue
		}
		out = append(out, ai.ID)
	}
	return out
}
