package allocate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
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

// burst allocates n pins at rmin=rmax=rf one after another, counting
// each allocation as pending and lately allocated on its peers as the
// peer code does, and returns how many each peer got.
func burst(t *testing.T, n, rf int, cands []Candidate) map[peer.ID]int {
	t.Helper()
	got := map[peer.ID]int{}
	for i := range n {
		allocs, err := Allocate(Request{Min: rf, Max: rf, Candidates: cands})
		if err != nil {
			t.Fatalf("pin %d of %d refused: %v", i, n, err)
		}
		for _, a := range allocs {
			got[a]++
			for j := range cands {
				if cands[j].Peer == a {
					cands[j].Pending++
					cands[j].Lately++
				}
			}
		}
	}
	return got
}

func TestBurstSpreadsOverEveryPeer(t *testing.T) {
	// Three peers with about the same free space (a few MB apart, as
	// real repos are): a burst of 20,000 pins at rf 2 puts ~13,333 on
	// each, and nothing is refused while the peers have room.
	cands := []Candidate{
		{Peer: "a", FreeSpace: 9_300_000_000, PinSize: 1000},
		{Peer: "b", FreeSpace: 9_301_000_000, PinSize: 1000},
		{Peer: "c", FreeSpace: 9_299_000_000, PinSize: 1000},
	}
	got := burst(t, 20000, 2, cands)
	for _, p := range ids("a", "b", "c") {
		if got[p] < 13300 || got[p] > 13370 {
			t.Fatalf("peer %s got %d of 40,000 replicas: not spread (%v)", p, got[p], got)
		}
	}
}

func TestBurstFollowsFreeSpace(t *testing.T) {
	// Free space 4:2:1:1 and nothing measured about pin sizes: a burst at
	// rf 1 is shared in that proportion (D'Hondt), the first pin to the
	// roomiest.
	cands := []Candidate{{Peer: "a", FreeSpace: 4 * GB}, {Peer: "b", FreeSpace: 2 * GB}, {Peer: "c", FreeSpace: GB}, {Peer: "d", FreeSpace: GB}}
	first, err := Allocate(Request{Min: 1, Max: 1, Candidates: cands})
	if err != nil || !slices.Equal(first, ids("a")) {
		t.Fatalf("first pin: %v %v, want a", first, err)
	}
	got := burst(t, 8000, 1, cands)
	want := map[peer.ID]int{"a": 4000, "b": 2000, "c": 1000, "d": 1000}
	for p, w := range want {
		if got[p] < w-2 || got[p] > w+2 {
			t.Fatalf("peer %s got %d, want ~%d (%v)", p, got[p], w, got)
		}
	}
}

func TestRefusedOnlyWithoutRoom(t *testing.T) {
	// Measured 1 MiB a pin: a peer with 10 MiB free and 9 pins on their
	// way has room for exactly one more; with 10 on their way it has none.
	const MiB = 1 << 20
	room := Candidate{Peer: "12D3KooWroomy", FreeSpace: 10 * MiB, Pending: 9, PinSize: MiB}
	if got, err := Allocate(Request{Min: 1, Max: 1, Candidates: []Candidate{room}}); err != nil || len(got) != 1 {
		t.Fatalf("room for one: %v %v", got, err)
	}
	room.Pending = 10
	_, err := Allocate(Request{Min: 1, Max: 1, Candidates: []Candidate{room, {Peer: "12D3KooWfullpeer", FreeSpace: 5 * GB, Full: true}}})
	if !errors.Is(err, ErrNotEnoughPeers) {
		t.Fatalf("got %v, want ErrNotEnoughPeers", err)
	}
	// The refusal says what is free and what is needed, peer by peer.
	for _, want := range []string{"10.0 MiB free, 10.0 MiB of it reserved for 10 pins on their way at 1.0 MiB each: 0 B left, a pin needs 1.0 MiB", "is full or unreachable (5.0 GiB free)"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	// Unmeasured pin size: pending pins reserve nothing, so a peer with
	// any free space takes a burst of any size.
	unmeasured := []Candidate{{Peer: "a", FreeSpace: 1, Pending: 1 << 40}}
	if _, err := Allocate(Request{Min: 1, Max: 1, Candidates: unmeasured}); err != nil {
		t.Fatalf("unmeasured size: %v", err)
	}
	// Huge figures (a stranger's heartbeat) do not overflow into room.
	huge := []Candidate{{Peer: "a", FreeSpace: 1 << 62, Pending: 1 << 40, PinSize: 1 << 40}}
	if _, err := Allocate(Request{Min: 1, Max: 1, Candidates: huge}); err == nil {
		t.Fatal("pending × size overflowed into room")
	}
}

func TestSizeMeter(t *testing.T) {
	var m SizeMeter
	if _, ok := m.Observe(5000, 0); ok {
		t.Fatal("a size before any pin completed")
	}
	if _, ok := m.Observe(9000, 0); ok {
		t.Fatal("growth without pins measured as a size")
	}
	// 100 pins completed and the repo grew 104,000 bytes since the first
	// reading (growth while pins are fetched counts for them): 1,040 a pin.
	if got, ok := m.Observe(109000, 100); !ok || got != 1040 {
		t.Fatalf("got %d %v, want 1040", got, ok)
	}
	// Garbage collection shrinks the repo: the next pins are measured from
	// the lower base, and the shrink is not a negative size.
	m.Observe(50000, 100)
	// 300 pins of blocks kubo already had: no growth. The ratio of decayed
	// sums: (0.75×104,000 + 0) ÷ (0.75×100 + 300) = 208.
	if got, _ := m.Observe(50000, 400); got != 208 {
		t.Fatalf("got %d, want 208", got)
	}
	// A restart of the counter starts over from the new reading.
	if got, ok := m.Observe(70000, 3); !ok || got != 208 {
		t.Fatalf("after a counter reset: %d %v", got, ok)
	}
}

func TestRecent(t *testing.T) {
	var r Recent
	sec := int64(1e9)
	for _, at := range []int64{10 * sec, 10*sec + 1, 11 * sec, 12*sec + 5e8, 12*sec + 5e8} {
		r.Add(at)
	}
	for _, tc := range []struct {
		since int64
		want  uint64
	}{{0, 5}, {10 * sec, 5}, {10*sec + 2, 5}, {11 * sec, 3}, {12 * sec, 2}, {13 * sec, 0}} {
		if got := r.Since(tc.since); got != tc.want {
			t.Errorf("since %d ns: %d, want %d", tc.since, got, tc.want)
		}
	}
	r.Forget(11 * sec)
	if got := r.Since(0); got != 3 {
		t.Fatalf("after forgetting before 11 s: %d, want 3", got)
	}
}

func TestQueuesReserveButDoNotSkewTheSpread(t *testing.T) {
	// b has a long queue (a slow kubo): its pins reserve room, but the
	// burst is still split evenly.
	cands := []Candidate{{Peer: "a", FreeSpace: GB, PinSize: 10}, {Peer: "b", FreeSpace: GB, PinSize: 10, Pending: 50000}}
	got := burst(t, 1000, 1, cands)
	if got["a"] != 500 || got["b"] != 500 {
		t.Fatalf("a long queue skewed the spread: %v", got)
	}
}
