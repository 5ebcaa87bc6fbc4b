package allocate

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

const GB = 1 << 30

func c(id string, free uint64, tags ...string) Candidate {
	cand := Candidate{Peer: peer.ID(id), FreeSpace: free * GB, Tags: map[string]string{}}
	for i := 0; i+1 < len(tags); i += 2 {
		cand.Tags[tags[i]] = tags[i+1]
	}
	return cand
}

func full(cand Candidate) Candidate { cand.Full = true; return cand }

func ids(s ...string) []peer.ID {
	out := make([]peer.ID, len(s))
	for i, x := range s {
		out[i] = peer.ID(x)
	}
	return out
}

func TestAllocate(t *testing.T) {
	five := []Candidate{c("a", 10), c("b", 50), c("c", 30), c("d", 20), c("e", 40)}
	regions := []Candidate{
		c("eu1", 100, "region", "eu"), c("eu2", 90, "region", "eu"), c("eu3", 80, "region", "eu"),
		c("us1", 50, "region", "us"), c("as1", 10, "region", "as"),
	}
	cases := []struct {
		name    string
		req     Request
		want    []peer.ID
		wantErr bool
	}{
		{name: "most free space first, up to max",
			req:  Request{Min: 1, Max: 3, Candidates: five},
			want: ids("b", "e", "c")},
		{name: "fewer peers than max: all of them",
			req:  Request{Min: 1, Max: 9, Candidates: five[:2]},
			want: ids("b", "a")},
		{name: "below min fails",
			req:     Request{Min: 3, Max: 3, Candidates: five[:2]},
			wantErr: true},
		{name: "healthy current allocations are kept (stable)",
			req:  Request{Min: 2, Max: 2, Current: ids("a", "d"), Candidates: five},
			want: ids("d", "a")},
		{name: "a current allocation that lost its metric is replaced, the other kept",
			req:  Request{Min: 2, Max: 2, Current: ids("a", "gone"), Candidates: five},
			want: ids("a", "b")},
		{name: "more current allocations than max: keep the roomiest",
			req:  Request{Min: 1, Max: 2, Current: ids("a", "c", "e"), Candidates: five},
			want: ids("e", "c")},
		{name: "a full peer keeps its replica but gets no new one",
			req:  Request{Min: 2, Max: 3, Current: ids("a"), Candidates: []Candidate{full(c("a", 0)), full(c("b", 1)), c("c", 5), c("d", 4)}},
			want: ids("a", "c", "d")},
		{name: "full and missing peers are not candidates; min unmet",
			req:     Request{Min: 2, Max: 2, Candidates: []Candidate{full(c("a", 0)), c("b", 3)}},
			wantErr: true},
		{name: "user allocations come before free space",
			req:  Request{Min: 2, Max: 3, User: ids("a", "d"), Candidates: five},
			want: ids("a", "d", "b")},
		{name: "user allocation that is not a candidate is skipped",
			req:  Request{Min: 1, Max: 2, User: ids("nope", "a"), Candidates: five},
			want: ids("a", "b")},
		{name: "no peer twice",
			req:  Request{Min: 1, Max: 4, Current: ids("a", "a"), User: ids("a", "b", "b"), Candidates: five},
			want: ids("a", "b", "e", "c")},
		{name: "spread by region: one per region before a second in any",
			req:  Request{Min: 3, Max: 3, Candidates: regions, Policy: Policy{SpreadBy: "region"}},
			want: ids("eu1", "us1", "as1")},
		{name: "spread by region, more replicas than regions",
			req:  Request{Min: 1, Max: 4, Candidates: regions, Policy: Policy{SpreadBy: "region"}},
			want: ids("eu1", "us1", "as1", "eu2")},
		{name: "spread counts kept allocations",
			req:  Request{Min: 2, Max: 2, Current: ids("eu2"), Candidates: regions, Policy: Policy{SpreadBy: "region"}},
			want: ids("eu2", "us1")},
		{name: "without spreading, free space decides",
			req:  Request{Min: 3, Max: 3, Candidates: regions},
			want: ids("eu1", "eu2", "eu3")},
		{name: "equal free space: ordered by peer ID (deterministic)",
			req:  Request{Min: 2, Max: 2, Candidates: []Candidate{c("z", 1), c("y", 1), c("x", 1)}},
			want: ids("x", "y")},
		{name: "bad factors",
			req:     Request{Min: 3, Max: 2, Candidates: five},
			wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Allocate(tc.req)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				if tc.req.Min <= tc.req.Max && !errors.Is(err, ErrNotEnoughPeers) {
					t.Fatalf("error %v does not wrap ErrNotEnoughPeers", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRendezvousOrder(t *testing.T) {
	peers := ids("p1", "p2", "p3", "p4", "p5")
	a := RendezvousOrder("cid-1", peers)
	rev := slices.Clone(peers)
	slices.Reverse(rev)
	if got := RendezvousOrder("cid-1", rev); !slices.Equal(got, a) {
		t.Fatalf("order depends on the input order: %v vs %v", got, a)
	}
	// Removing a peer keeps the others' relative order.
	without := slices.DeleteFunc(slices.Clone(peers), func(p peer.ID) bool { return p == a[0] })
	if got := RendezvousOrder("cid-1", without); !slices.Equal(got, a[1:]) {
		t.Fatalf("after removing %s: %v, want %v", a[0], got, a[1:])
	}
	// Different keys spread the first place over the peers.
	first := map[peer.ID]int{}
	for i := range 1000 {
		first[RendezvousOrder(string(rune(i))+"-key", peers)[0]]++
	}
	for _, p := range peers {
		if first[p] < 120 || first[p] > 280 {
			t.Fatalf("peer %s is first for %d of 1000 keys: not spread (%v)", p, first[p], first)
		}
	}
}

// BenchmarkAllocate1000 measures allocations per second with 1,000
// candidate peers spread over 5 regions (replication 3, spread by region).
func BenchmarkAllocate1000(b *testing.B) {
	var cands []Candidate
	for i := range 1000 {
		cands = append(cands, Candidate{Peer: peer.ID(fmt.Sprintf("peer-%04d", i)),
			FreeSpace: uint64(i*7919%1000+1) * GB, Tags: map[string]string{"region": fmt.Sprint("r", i%5)}})
	}
	req := Request{Min: 2, Max: 3, Current: []peer.ID{"peer-0007"}, Candidates: cands, Policy: Policy{SpreadBy: "region"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Allocate(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocations/s")
}
