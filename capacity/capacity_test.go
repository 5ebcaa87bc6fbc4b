package capacity

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/pubsubmon"
)

// kubo is a repository of max bytes holding pins × perPin; during reads
// runs after each repo/stat has measured, as a pin completing during the
// call would.
type kubo struct {
	mu          sync.Mutex
	max, perPin uint64
	pins        uint64
	during      func()
	gcs         int
}

func (k *kubo) RepoStat(context.Context) (api.IPFSRepoStat, error) {
	k.mu.Lock()
	st := api.IPFSRepoStat{RepoSize: 1000 + k.pins*k.perPin, StorageMax: k.max}
	during := k.during
	k.mu.Unlock()
	if during != nil {
		during()
	}
	return st, nil
}

func (k *kubo) RepoGC(context.Context, func(api.Cid)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gcs++
	return nil
}

func (k *kubo) pin() { k.mu.Lock(); k.pins++; k.mu.Unlock() }

func figure(ms []api.Metric, name string) string {
	for _, m := range ms {
		if m.Name == name {
			return m.Value
		}
	}
	return "none"
}

// A pin that completes while kubo measures its repository is counted with
// its bytes at the next reading, not without them at this one: counted
// without, a burst under load read pins as small and let the ring accept
// more than it could hold.
func TestPinSizeIsNotReadSmallWhilePinsComplete(t *testing.T) {
	ctx := context.Background()
	const MiB = 1 << 20
	k := &kubo{max: 100 * MiB, perPin: MiB}
	o := NewOwn(ctx, k, 0.9, false, nil)
	if got := figure(o.Collect(ctx), pubsubmon.MetricPinSize); got != "none" {
		t.Fatalf("before any pin, a pin measured %s", got)
	}
	complete := func() { k.pin(); o.PinDone() }
	complete()
	if got := figure(o.Collect(ctx), pubsubmon.MetricPinSize); got != fmt.Sprint(MiB) {
		t.Fatalf("one pin of 1 MiB measured as %s bytes", got)
	}
	k.during = complete
	if got := figure(o.Collect(ctx), pubsubmon.MetricPinSize); got != fmt.Sprint(MiB) {
		t.Fatalf("with a pin completing during repo/stat, a pin measured %s bytes, want %d", got, MiB)
	}
	k.during = nil
	if got := figure(o.Collect(ctx), pubsubmon.MetricPinSize); got != fmt.Sprint(MiB) {
		t.Fatalf("after it, a pin measured %s bytes, want %d", got, MiB)
	}
}

// Over the threshold the peer says it is full and runs kubo's garbage
// collection, once however many heartbeats follow within a minute.
func TestFullRunsGarbageCollectionOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubo{max: 10_000, perPin: 1000}
	o := NewOwn(ctx, k, 0.9, true, func() Queue { return Queue{Pinned: 8, Queued: 2, Absorbed: 77} })
	ms := o.Collect(ctx)
	if figure(ms, pubsubmon.MetricFull) != "false" || figure(ms, pubsubmon.MetricFreeSpace) != "9000" ||
		figure(ms, pubsubmon.MetricPinned) != "8" || figure(ms, pubsubmon.MetricQueued) != "2" ||
		figure(ms, pubsubmon.MetricAbsorbed) != "77" {
		t.Fatalf("an empty repo: %v", ms)
	}
	for range 9 {
		k.pin()
	}
	for range 3 {
		if ms = o.Collect(ctx); figure(ms, pubsubmon.MetricFull) != "true" {
			t.Fatalf("9,000 + 1,000 of 10,000 bytes: %v", ms)
		}
	}
	cancel()
	o.Close()
	if k.gcs != 1 {
		t.Fatalf("%d garbage collections, want 1", k.gcs)
	}
}

// metrics is a monitor's view: every metric given is the peer's latest.
type metrics []api.Metric

func (m metrics) Latest(name string) []api.Metric {
	var out []api.Metric
	for _, x := range m {
		if x.Name == name {
			out = append(out, x)
		}
	}
	return out
}

func (m metrics) LatestValid(name string) []api.Metric {
	var out []api.Metric
	for _, x := range m.Latest(name) {
		if x.Valid {
			out = append(out, x)
		}
	}
	return out
}

// Candidates reserve, per peer, its measured size for the pins queued at
// its heartbeat and for those allocated since shortly before it; a peer
// gone for less than the grace is a full candidate, one gone longer none;
// a stranger's absurd queue does not overflow.
func TestLedgerCandidates(t *testing.T) {
	now := time.Now()
	l := &Ledger{Interval: time.Second, Grace: time.Minute, PinSizeEstimate: 10}
	hb := now.Add(-500 * time.Millisecond).UnixNano()
	m := metrics{
		{Name: pubsubmon.MetricFreeSpace, Peer: "a", Value: "1000", Valid: true, ReceivedAt: hb},
		{Name: pubsubmon.MetricQueued, Peer: "a", Value: "3", Valid: true},
		{Name: pubsubmon.MetricPinSize, Peer: "a", Value: "100", Valid: true},
		{Name: pubsubmon.MetricFreeSpace, Peer: "b", Value: "1000", Valid: true, ReceivedAt: hb},
		{Name: pubsubmon.MetricQueued, Peer: "b", Value: "18446744073709551615", Valid: true},
		{Name: pubsubmon.MetricFreeSpace, Peer: "c", Value: "1000", Expire: now.Add(-time.Second).UnixNano()},
		{Name: pubsubmon.MetricFreeSpace, Peer: "d", Value: "1000", Expire: now.Add(-time.Hour).UnixNano()},
		{Name: pubsubmon.MetricFull, Peer: "b", Value: "true", Valid: true},
	}
	by := func() map[peer.ID]string {
		out := map[peer.ID]string{}
		for _, c := range l.Candidates(now, m) {
			out[c.Peer] = fmt.Sprintf("pending=%d size=%d full=%v room=%v", c.Pending, c.PinSize, c.Full, c.HasRoom())
		}
		return out
	}
	got := by()
	want := map[peer.ID]string{
		"a": "pending=3 size=100 full=false room=true",
		"b": "pending=1099511627776 size=10 full=true room=false",
		"c": "pending=0 size=0 full=true room=false",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("candidates\n%v\nwant\n%v", got, want)
	}
	l.Allocated(now, []peer.ID{"a", "b"}, []peer.ID{"b"}) // b held it already
	l.Allocated(now, []peer.ID{"a"}, nil)
	if got := by()["a"]; got != "pending=5 size=100 full=false room=true" {
		t.Fatalf("after two allocations to a: %s", got)
	}
}

// A peer that says which allocations it took in has only the later ones
// reserved, however long ago they were made: pins it already counts are
// not counted twice (a burst under load was refused early), and pins
// still crossing a slow ring are not forgotten after a TTL.
func TestLedgerReservesWhatThePeerHasNotTakenIn(t *testing.T) {
	now := time.Now()
	l := &Ledger{Interval: time.Second, Grace: time.Minute}
	free := api.Metric{Name: pubsubmon.MetricFreeSpace, Peer: "a", Value: "1000000", Valid: true, ReceivedAt: now.UnixNano()}
	size := api.Metric{Name: pubsubmon.MetricPinSize, Peer: "a", Value: "100", Valid: true}
	queued := api.Metric{Name: pubsubmon.MetricQueued, Peer: "a", Value: "0", Valid: true, ReceivedAt: now.UnixNano()}
	pending := func(m metrics) uint64 { return l.Candidates(now, m)[0].Pending }
	pending(metrics{free, size})
	// 4 allocations 2.5 s ago, 3 at 1.5 s, 2 now: all inside the TTL
	// window of a peer that says nothing.
	for _, a := range []struct {
		ago time.Duration
		n   int
	}{{2500 * time.Millisecond, 4}, {1500 * time.Millisecond, 3}, {0, 2}} {
		for range a.n {
			l.Allocated(now.Add(-a.ago), []peer.ID{"a"}, nil)
		}
	}
	if got := pending(metrics{free, size}); got != 9 {
		t.Fatalf("no absorbed figure: %d pending, want the 9 of the last TTL", got)
	}
	took := func(ago time.Duration) api.Metric {
		return api.Metric{Name: pubsubmon.MetricAbsorbed, Peer: "a", Value: fmt.Sprint(now.Add(-ago).UnixNano()), Valid: true, ReceivedAt: now.UnixNano()}
	}
	for _, tc := range []struct {
		ago  time.Duration
		want uint64
	}{
		{2 * time.Second, 5},  // took in the first 4
		{time.Second, 2},      // and the next 3
		{-time.Hour, 2},       // a claim from the future counts to its heartbeat
		{10 * time.Second, 9}, // took in nothing recent: all are on their way
	} {
		if got := pending(metrics{free, size, queued, took(tc.ago)}); got != tc.want {
			t.Errorf("absorbed %v ago: %d pending, want %d", tc.ago, got, tc.want)
		}
	}

	// The absorbed and queue figures of a newer heartbeat than the free
	// space (one whose kubo did not answer) are not taken with it: the
	// pins that went from the queue into kubo meanwhile would count
	// nowhere. The TTL window stands instead.
	stale := free
	stale.ReceivedAt = now.Add(-time.Second).UnixNano()
	if got := pending(metrics{stale, size, queued, took(time.Second)}); got < 7 {
		t.Errorf("absorbed from a newer heartbeat than the free space: %d pending, want the TTL window's", got)
	}

	// A peer far behind (its tracker a minute late on a loaded machine):
	// what it has not taken in stays reserved past the TTL window, up to
	// maxOnTheWay.
	l = &Ledger{Interval: time.Second, Grace: time.Minute}
	pending(metrics{free, size})
	for _, ago := range []time.Duration{maxOnTheWay + time.Minute, 50 * time.Second, 40 * time.Second, 30 * time.Second} {
		l.Allocated(now.Add(-ago), []peer.ID{"a"}, nil)
	}
	if got := pending(metrics{free, size, queued, took(maxOnTheWay + 2*time.Minute)}); got != 3 {
		t.Errorf("a peer that took in nothing since long before: %d pending, want the 3 of the last %s", got, maxOnTheWay)
	}
	if got := pending(metrics{free, size, queued, took(45 * time.Second)}); got != 2 {
		t.Errorf("a peer 45 s behind: %d pending, want the 2 allocated since", got)
	}
}

func TestIsFull(t *testing.T) {
	for _, tc := range []struct {
		size, max uint64
		want      bool
	}{
		{899, 1000, false}, {900, 1000, true}, {2000, 1000, true}, {5, 0, false},
	} {
		if got := IsFull(api.IPFSRepoStat{RepoSize: tc.size, StorageMax: tc.max}, 0.9); got != tc.want {
			t.Errorf("%d of %d: %v, want %v", tc.size, tc.max, got, tc.want)
		}
	}
}

// One pass over a small ring: which pins move, why, from where, and what
// becomes of each once the allocator answers.

// A peer that passed no audit takes at most UnverifiedCap replicas,
// counted as the larger of what it says it holds and what this ledger gave
// it: a peer saying it holds nothing is capped all the same, and the
// refusal says why. A verified peer is not capped.
func TestLedgerCapsUnverifiedPeers(t *testing.T) {
	now := time.Now()
	verified := map[peer.ID]bool{"v": true}
	l := &Ledger{Interval: time.Second, Grace: time.Minute, UnverifiedCap: 3,
		Unverified: func(p peer.ID) bool { return !verified[p] }}
	hb := func(p peer.ID, pinned string) metrics {
		return metrics{{Name: pubsubmon.MetricFreeSpace, Peer: p, Value: "1000000", Valid: true, ReceivedAt: now.UnixNano()},
			{Name: pubsubmon.MetricPinned, Peer: p, Value: pinned, Valid: true}}
	}
	closed := func(m metrics) string { return l.Candidates(now, m)[0].Closed }
	if c := closed(hb("liar", "0")); c != "" {
		t.Fatalf("a new peer holding nothing is closed: %s", c)
	}
	for range 3 {
		l.Allocated(now, []peer.ID{"liar"}, nil)
	}
	if c := closed(hb("liar", "0")); !strings.Contains(c, "holds 3 pins") || !strings.Contains(c, "audit.unverified_cap") {
		t.Fatalf("after 3 allocations to a peer that says it holds none: %q", c)
	}
	if c := closed(hb("big", "5")); !strings.Contains(c, "holds 5 pins") {
		t.Fatalf("a new peer saying it holds 5: %q", c)
	}
	for range 5 {
		l.Allocated(now, []peer.ID{"v"}, nil)
	}
	if c := closed(hb("v", "50")); c != "" {
		t.Fatalf("a verified peer is capped: %q", c)
	}
}

// RepoStats reads each live peer's repo size and StorageMax from its
// valid heartbeats; a stale one is left out.
func TestRepoStats(t *testing.T) {
	a, b := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	m := metrics{
		{Name: pubsubmon.MetricRepoSize, Peer: a, Value: "100", Valid: true},
		{Name: pubsubmon.MetricRepoMax, Peer: a, Value: "1000", Valid: true},
		{Name: pubsubmon.MetricRepoSize, Peer: b, Value: "5", Valid: false},
	}
	got := RepoStats(m)
	if len(got) != 1 || got[0].RepoSize != 100 || got[0].StorageMax != 1000 {
		t.Fatalf("repo stats %+v: want a's 100 of 1000 only", got)
	}
}
