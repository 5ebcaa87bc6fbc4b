package pubsubmon

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

const topic = "/pinring/test/metrics"

type member struct {
	host   host.Host
	ps     *pubsub.PubSub
	mon    *Monitor
	stop   context.CancelFunc
	mu     sync.Mutex
	alerts []api.Alert
}

func newMember(t *testing.T, mn mocknet.Mocknet, free string, tags map[string]string) *member {
	t.Helper()
	return newMemberEvery(t, mn, free, tags, 100*time.Millisecond)
}

// newMemberEvery is newMember with heartbeats every interval.
func newMemberEvery(t *testing.T, mn mocknet.Mocknet, free string, tags map[string]string, interval time.Duration) *member {
	t.Helper()
	return newMemberWith(t, mn, free, tags, interval, nil)
}

// newMemberWith is newMemberEvery with mod, when set, told the member's
// host and changing its monitor's Deps before it starts.
func newMemberWith(t *testing.T, mn mocknet.Mocknet, free string, tags map[string]string, interval time.Duration, mod func(host.Host, *Deps)) *member {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithStrictSignatureVerification(true), pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	m := &member{host: h, ps: ps, stop: cancel}
	cfg := DefaultConfig()
	cfg.Interval = config.Duration(interval)
	cfg.Tags = tags
	deps := Deps{PubSub: ps, Topic: topic, Self: h.ID(), Peername: "p-" + free,
		Collect: func(context.Context) []api.Metric {
			return []api.Metric{{Name: MetricFreeSpace, Value: free}}
		},
		OnAlert: func(a api.Alert) { m.mu.Lock(); m.alerts = append(m.alerts, a); m.mu.Unlock() },
	}
	if mod != nil {
		mod(h, &deps)
	}
	if m.mon, err = New(ctx, cfg, deps); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); m.mon.Close() })
	return m
}

func TestHeartbeatsExpireAndRaiseOneAlert(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newMember(t, mn, "100", map[string]string{"region": "eu"})
	b := newMember(t, mn, "200", map[string]string{"region": "us"})
	c := newMember(t, mn, "300", nil)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "everyone's freespace at a", func() bool { return len(a.mon.LatestValid(MetricFreeSpace)) == 3 })
	for _, mt := range a.mon.LatestValid(MetricFreeSpace) {
		want := map[peer.ID]string{a.host.ID(): "100", b.host.ID(): "200", c.host.ID(): "300"}[mt.Peer]
		if mt.Value != want || !mt.Valid || mt.Expire <= time.Now().UnixNano() {
			t.Fatalf("metric %+v, want value %s and valid", mt, want)
		}
	}
	var tags map[string]string
	for _, mt := range a.mon.LatestValid(MetricTags) {
		if mt.Peer == b.host.ID() {
			json.Unmarshal([]byte(mt.Value), &tags)
		}
	}
	if tags["region"] != "us" {
		t.Fatalf("b's tags at a: %v", tags)
	}

	// c goes away: its metrics expire after 3 intervals and a raises one
	// alert for it, not one per check.
	c.stop()
	testkit.WaitFor(t, 10*time.Second, "an alert for c", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.alerts) > 0
	})
	time.Sleep(500 * time.Millisecond)
	a.mu.Lock()
	if len(a.alerts) != 1 || a.alerts[0].Peer != c.host.ID() || a.alerts[0].Name != MetricPing {
		t.Fatalf("alerts %+v, want one ping alert for c", a.alerts)
	}
	a.mu.Unlock()
	if a.mon.Alive(c.host.ID()) || !a.mon.Alive(b.host.ID()) {
		t.Fatal("liveness wrong after c left")
	}
	if _, down := a.mon.DownSince(c.host.ID()); !down {
		t.Fatal("DownSince does not report c")
	}
	if n := len(a.mon.LatestValid(MetricFreeSpace)); n != 2 {
		t.Fatalf("%d valid freespace metrics after c left, want 2", n)
	}
	if all := a.mon.Latest(MetricFreeSpace); len(all) != 3 {
		t.Fatalf("Latest lists %d peers, want 3 (c's expired metric included)", len(all))
	}
	if got := a.mon.Alerts(); len(got) != 1 {
		t.Fatalf("Alerts() = %d, want 1", len(got))
	}
	// The repair loop wakes when the next peer counts as dead: with an
	// hour of grace that is c, an hour after its ping expired; with none,
	// c is dead already and the next is b, when its ping expires.
	pings := func() map[peer.ID]int64 {
		out := map[peer.ID]int64{}
		for _, mt := range a.mon.Latest(MetricPing) {
			out[mt.Peer] = mt.Expire
		}
		return out
	}
	before := pings()
	// First comes the end of a's listening window (Unheard): an hour and
	// a TTL after a started, before c's death.
	if at, ok := a.mon.NextDeath(time.Hour); !ok || !at.Equal(a.mon.started.Add(a.mon.cfg.TTL()+time.Hour)) {
		t.Fatalf("next death with an hour of grace: %v %v, want a's start + TTL + 1h", at, ok)
	}
	a.mon.started = a.mon.started.Add(-2 * time.Hour) // read by this goroutine only
	if at, ok := a.mon.NextDeath(time.Hour); !ok || !at.Equal(time.Unix(0, before[c.host.ID()]).Add(time.Hour)) {
		t.Fatalf("next death with an hour of grace: %v %v, want c's ping expiry + 1h", at, ok)
	}
	at, ok := a.mon.NextDeath(0)
	after := pings() // b's heartbeats go on meanwhile
	if !ok || at.UnixNano() < before[b.host.ID()] || at.UnixNano() > after[b.host.ID()] {
		t.Fatalf("next death without grace: %v %v, want b's ping expiry (%v)", at, ok, time.Unix(0, before[b.host.ID()]))
	}
}

func TestForgedHeartbeatIsDropped(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newMember(t, mn, "100", nil)
	b := newMember(t, mn, "200", nil)
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithStrictSignatureVerification(true), pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	forger, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	mn.LinkAll()
	mn.ConnectAllButSelf()
	testkit.WaitFor(t, 10*time.Second, "a sees b", func() bool { return len(a.mon.LatestValid(MetricPing)) == 2 })
	// The forger claims to be b, with a huge free space.
	fake, _ := json.Marshal(heartbeat{Peer: b.host.ID(), TTL: int64(time.Hour),
		Metrics: []wireValue{{Name: MetricFreeSpace, Value: "999999"}}})
	for range 5 {
		forger.Publish(ctx, fake)
		forger.Publish(ctx, []byte("not json"))
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	for _, mt := range a.mon.Latest(MetricFreeSpace) {
		if mt.Value == "999999" {
			t.Fatalf("a forged heartbeat was recorded: %+v", mt)
		}
	}
	if n := len(a.mon.Latest(MetricPing)); n != 2 {
		t.Fatalf("a knows %d peers, want 2 (the forger sent nothing valid)", n)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Interval = config.Duration(time.Millisecond)
	if err := cfg.Validate(); err == nil {
		t.Fatal("a 1ms interval was accepted")
	}
	if DefaultConfig().TTL() != 30*time.Second {
		t.Fatalf("default TTL %s, want 30s", DefaultConfig().TTL())
	}
}

// A peer that leaves is dead at once for any grace period, its metrics are
// no longer valid, one "left" alert is raised; when it comes back it is
// alive again.
func TestLeavingPeerIsGoneAtOnceAndMayComeBack(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newMember(t, mn, "100", nil)
	b := newMember(t, mn, "200", nil)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "b's metrics at a", func() bool { return a.mon.Alive(b.host.ID()) })
	if err := b.mon.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "b dead at a, with an hour of grace", func() bool { return a.mon.Dead(time.Hour)[b.host.ID()] })
	if a.mon.Alive(b.host.ID()) || len(a.mon.LatestValid(MetricFreeSpace)) != 1 {
		t.Fatal("a still counts b as alive")
	}
	a.mu.Lock()
	if len(a.alerts) != 1 || !a.alerts[0].Left || a.alerts[0].Peer != b.host.ID() {
		t.Fatalf("alerts at a: %+v, want one 'left' alert for b", a.alerts)
	}
	a.mu.Unlock()
	// b stopped its heartbeats; a heartbeat published by hand (as a
	// restarted b would) makes it a member again.
	time.Sleep(300 * time.Millisecond)
	if a.mon.Alive(b.host.ID()) {
		t.Fatal("b sent heartbeats after leaving")
	}
	b.mon.mu.Lock()
	b.mon.leaving = false
	b.mon.mu.Unlock()
	if err := b.mon.PublishNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "b alive again at a", func() bool { return a.mon.Alive(b.host.ID()) && !a.mon.Dead(0)[b.host.ID()] })
}

// In a ring larger than RingPeers, a peer's heartbeats come further
// apart, so that the ring sends at most RingPeers an interval.
func TestHeartbeatIntervalGrowsWithTheRing(t *testing.T) {
	for _, tc := range []struct {
		peers int
		want  time.Duration
	}{{1, 10 * time.Second}, {200, 10 * time.Second}, {1000, 50 * time.Second}, {10000, 500 * time.Second}} {
		got := intervalFor(10*time.Second, tc.peers)
		if got != tc.want {
			t.Errorf("%d peers: interval %s, want %s", tc.peers, got, tc.want)
		}
		if rate := float64(tc.peers) / got.Seconds(); rate > RingPeers/10 {
			t.Errorf("%d peers: %.1f heartbeats a second, over %d", tc.peers, rate, RingPeers/10)
		}
	}
}

// A monitor that hears a large ring sends its heartbeats less often, with
// a TTL to match, and the others keep its metrics valid that long.
func TestHeartbeatTTLFollowsTheRing(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newMember(t, mn, "1", nil), newMember(t, mn, "2", nil)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	// a hears 500 peers and itself.
	now := time.Now()
	for i := range 500 {
		a.mon.record(heartbeat{Peer: peer.ID(fmt.Sprintf("peer-%d", i)), TTL: int64(time.Minute), Seq: now.UnixNano(),
			Metrics: []wireValue{{Name: MetricPing, Value: "1"}}})
	}
	if got, want := a.mon.Interval(), 250500*time.Microsecond; got != want {
		t.Fatalf("interval with 500 peers heard: %s, want %s", got, want)
	}
	// b keeps a's ping valid for 3 × that after it was sent (a few
	// heartbeats may cross with older ones on the way).
	ttl := 3 * a.mon.Interval()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sent := time.Now()
		if err := a.mon.PublishNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		for _, m := range b.mon.Latest(MetricPing) {
			if m.Peer != a.host.ID() {
				continue
			}
			if valid := time.Unix(0, m.Expire).Sub(sent); valid >= ttl && valid <= ttl+time.Since(sent) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never held a's ping valid for %s after it was sent: %v", ttl, b.mon.Latest(MetricPing))
		}
	}
}

// Strangers' heartbeats do not stretch the interval: only members count.
func TestStrangersDoNotStretchTheInterval(t *testing.T) {
	members := map[peer.ID]bool{}
	m := &Monitor{cfg: DefaultConfig(), peers: map[peer.ID]*peerState{},
		deps: Deps{Self: "self", Now: time.Now, Member: func(pid peer.ID) bool { return members[pid] }}}
	now := time.Now()
	for i := range 1000 {
		pid := peer.ID(fmt.Sprintf("peer-%d", i))
		if i < 400 {
			members[pid] = true
		}
		m.record(heartbeat{Peer: pid, TTL: int64(time.Minute), Seq: now.UnixNano(), Metrics: []wireValue{{Name: MetricPing, Value: "1"}}})
	}
	if got, want := m.Interval(), 20*time.Second; got != want {
		t.Fatalf("400 members and 600 strangers heard: interval %s, want %s (400 ÷ 200 × 10s)", got, want)
	}
}

// A peer this one loses every connection to (killed, switched off, its
// router gone) is down an interval after, not a TTL (three intervals)
// after its last heartbeat; a peer that only lost this connection keeps
// sending heartbeats, which set its expiry again.
func TestADisconnectedPeerIsDownAfterOneInterval(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b, c := newMemberEvery(t, mn, "1", nil, time.Second), newMemberEvery(t, mn, "2", nil, time.Second), newMemberEvery(t, mn, "3", nil, time.Second)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	every := func(m *member, pid peer.ID) bool {
		m.mon.mu.Lock()
		defer m.mon.mu.Unlock()
		ps := m.mon.peers[pid]
		return ps != nil && ps.every == int64(time.Second)
	}
	testkit.WaitFor(t, 10*time.Second, "heartbeats at the 1 s interval", func() bool {
		return every(a, c.host.ID()) && every(b, c.host.ID()) && every(a, b.host.ID())
	})
	expiry := func(m *member, pid peer.ID) time.Time {
		for _, mt := range m.mon.Latest(MetricPing) {
			if mt.Peer == pid {
				return time.Unix(0, mt.Expire)
			}
		}
		t.Fatalf("no ping of %s", pid)
		return time.Time{}
	}
	// c dies with its connections; a watches its host's disconnections
	// (as a peer does), b does not.
	a.mon.WatchDisconnects(a.host.Network())
	c.stop()
	gone := time.Now()
	for _, o := range []*member{a, b} {
		mn.UnlinkPeers(c.host.ID(), o.host.ID())
		mn.DisconnectPeers(c.host.ID(), o.host.ID())
	}
	limit := gone.Add(time.Second + time.Second/4 + 100*time.Millisecond) // an interval and a quarter
	testkit.WaitFor(t, 5*time.Second, "c's metrics at a cut to an interval", func() bool { return !expiry(a, c.host.ID()).After(limit) })
	atA, atB := expiry(a, c.host.ID()), expiry(b, c.host.ID())
	if atB.Sub(atA) < 500*time.Millisecond {
		t.Fatalf("c expires at b (not told) %s after a: the TTL should come later", atB.Sub(atA))
	}
	testkit.WaitFor(t, 5*time.Second, "c down at a", func() bool { return !a.mon.Alive(c.host.ID()) })
	if !b.mon.Alive(c.host.ID()) && time.Now().Before(atB) {
		t.Fatal("b, not told, counts c down before its TTL")
	}

	// b only lost its connection to a: its next heartbeat sets its expiry
	// again, and no alert is raised for it.
	a.mon.Disconnected(b.host.ID())
	cut := expiry(a, b.host.ID())
	testkit.WaitFor(t, 5*time.Second, "b's next heartbeat at a", func() bool { return expiry(a, b.host.ID()).After(cut) })
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.alerts {
		if al.Peer == b.host.ID() {
			t.Fatalf("an alert for b, which kept sending: %+v", al)
		}
	}
}

// ringMember is newMemberEvery for a ring that knows its writers and its
// size: writers is filled as members are made, members is the ring's size
// every member reads.
func ringMember(t *testing.T, mn mocknet.Mocknet, free string, writer bool, writers *sync.Map, members *atomic.Int64) *member {
	t.Helper()
	return newMemberWith(t, mn, free, nil, 100*time.Millisecond, func(h host.Host, d *Deps) {
		if writer {
			writers.Store(h.ID(), true)
		}
		d.Writer = func(pid peer.ID) bool { _, ok := writers.Load(pid); return ok }
		d.Members = func() int { return int(members.Load()) }
	})
}

// heard is the peers whose free space m has, valid now.
func heard(m *member) map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, mt := range m.mon.LatestValid(MetricFreeSpace) {
		out[mt.Peer] = true
	}
	return out
}

func TestAFollowerOfALargeRingHearsTheWritersOnly(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	var writers sync.Map
	var members atomic.Int64
	members.Store(5)
	w1, w2 := ringMember(t, mn, "1", true, &writers, &members), ringMember(t, mn, "2", true, &writers, &members)
	f1, f2, f3 := ringMember(t, mn, "3", false, &writers, &members), ringMember(t, mn, "4", false, &writers, &members), ringMember(t, mn, "5", false, &writers, &members)
	all := []*member{w1, w2, f1, f2, f3}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	// A small ring: everyone hears everyone.
	testkit.WaitFor(t, 10*time.Second, "every heartbeat at every peer", func() bool {
		for _, m := range all {
			if len(heard(m)) != 5 {
				return false
			}
		}
		return true
	})

	// The ring grows past QuietPeers: the followers hear the writers
	// only, the writers still hear everyone, and nobody is alerted about
	// the followers a follower forgot.
	members.Store(int64(QuietPeers + 1))
	testkit.WaitFor(t, 5*time.Second, "the followers quiet", func() bool { return f1.mon.Quiet() && f2.mon.Quiet() && f3.mon.Quiet() })
	if w1.mon.Quiet() || w2.mon.Quiet() {
		t.Fatal("a writer went quiet")
	}
	before := map[peer.ID]int64{}
	for _, mt := range f1.mon.Latest(MetricFreeSpace) {
		before[mt.Peer] = mt.ReceivedAt
	}
	time.Sleep(time.Second) // ten intervals
	want := map[peer.ID]bool{f1.host.ID(): true, w1.host.ID(): true, w2.host.ID(): true}
	if got := heard(f1); !maps.Equal(got, want) {
		t.Fatalf("a quiet follower hears %v, want itself and the writers %v", got, want)
	}
	for _, mt := range f1.mon.Latest(MetricFreeSpace) {
		if mt.Peer != f1.host.ID() && mt.ReceivedAt <= before[mt.Peer] {
			t.Fatalf("no new heartbeat of writer %s at a quiet follower", mt.Peer)
		}
	}
	for _, w := range []*member{w1, w2} {
		if len(heard(w)) != 5 {
			t.Fatalf("a writer hears %d peers in a large ring, want 5", len(heard(w)))
		}
	}
	f1.mu.Lock()
	if len(f1.alerts) != 0 {
		t.Fatalf("alerts at a follower going quiet: %+v", f1.alerts)
	}
	f1.mu.Unlock()

	// The ring shrinks below three quarters of QuietPeers: the followers
	// hear everyone again.
	members.Store(int64(QuietPeers*3/4 - 1))
	testkit.WaitFor(t, 10*time.Second, "every heartbeat at the followers again", func() bool {
		return !f1.mon.Quiet() && len(heard(f1)) == 5 && len(heard(f3)) == 5
	})
}

// A quiet follower sends a heartbeat when it goes quiet and when a writer
// joins the metrics topic (a connection made, or made again after a
// router's reboot), not only every interval: its heartbeats reach only
// the writers it is connected to, and one that connects later would not
// hear of it for an interval — or ever, had it gone away meanwhile.
func TestAQuietFollowerGreetsTheWritersThatJoin(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	var writers sync.Map
	var members atomic.Int64
	members.Store(int64(QuietPeers + 1))
	ringMemberEvery := func(free string, writer bool) *member {
		return newMemberWith(t, mn, free, nil, time.Hour, func(h host.Host, d *Deps) {
			if writer {
				writers.Store(h.ID(), true)
			}
			d.Writer = func(pid peer.ID) bool { _, ok := writers.Load(pid); return ok }
			d.Members = func() int { return int(members.Load()) }
		})
	}
	w1, w2, f := ringMemberEvery("1", true), ringMemberEvery("2", true), ringMemberEvery("3", false)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	// Its first heartbeat went to nobody (not connected yet); the next is
	// an hour away.
	if _, err := mn.ConnectPeers(f.host.ID(), w1.host.ID()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the first writer hears the follower gone quiet", func() bool {
		return f.mon.Quiet() && heard(w1)[f.host.ID()]
	})
	if _, err := mn.ConnectPeers(f.host.ID(), w2.host.ID()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the second writer hears the follower", func() bool { return heard(w2)[f.host.ID()] })
}

// A follower whose own table is small goes quiet when a writer's
// heartbeat reports a large ring (joins reach the writers only, so a
// follower's table lags the ring); a stranger's claim counts for nothing.
func TestAFollowerSizesTheRingByTheWriters(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	var writers sync.Map
	var small, large atomic.Int64
	small.Store(5)
	large.Store(int64(QuietPeers + 1))
	w := ringMember(t, mn, "1", true, &writers, &large)
	liar := newMemberWith(t, mn, "2", nil, 100*time.Millisecond, func(h host.Host, d *Deps) { // a follower claiming a ring size
		d.Writer = func(pid peer.ID) bool { _, ok := writers.Load(pid); return ok }
		d.Members = func() int { return 5 }
		d.Collect = func(context.Context) []api.Metric {
			return []api.Metric{{Name: MetricFreeSpace, Value: "2"}, {Name: MetricMembers, Value: "100000"}}
		}
	})
	f := ringMember(t, mn, "3", false, &writers, &small)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(f.host.ID(), liar.host.ID()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the quiet loop looks every second
	if f.mon.Quiet() || f.mon.ReportedMembers() != 0 {
		t.Fatalf("a follower took a non-writer's ring size: quiet %v, reported %d", f.mon.Quiet(), f.mon.ReportedMembers())
	}
	if _, err := mn.ConnectPeers(f.host.ID(), w.host.ID()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the follower quiet by the writer's count", func() bool {
		return f.mon.Quiet() && f.mon.ReportedMembers() == QuietPeers+1
	})
}
