package pubsubmon

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/internal/testkit"
)

// offline is a monitor with no network, on a clock the test moves.
func offline(t testing.TB, maxPeers int, member func(peer.ID) bool) (*Monitor, *time.Time) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.MaxPeers = maxPeers
	m := &Monitor{cfg: cfg, peers: map[peer.ID]*peerState{},
		deps: Deps{Self: testkit.PeerID(t, 0), Now: func() time.Time { return now }, Member: member}}
	return m, &now
}

// deliver hands a heartbeat to m as gossipsub would: the validator, then,
// if it accepts, the receive loop. It returns the validator's verdict and
// whether the heartbeat was recorded.
func deliver(m *Monitor, hb heartbeat) (pubsub.ValidationResult, bool) {
	b, _ := json.Marshal(hb)
	msg := &pubsub.Message{Message: &pb.Message{From: []byte(hb.Peer), Data: b}}
	v := m.validate(context.Background(), "", msg)
	if v != pubsub.ValidationAccept {
		return v, false
	}
	return v, m.take(hb)
}

// A peer never heard from counts as dead only once the monitor has
// listened for a TTL plus grace (a peer just started has not heard
// everyone); then every peer without a heartbeat does, and the heard
// ones and this peer do not. The repair loop wakes when that moment comes.
func TestUnheardPeersCountAfterTTLAndGrace(t *testing.T) {
	m, now := offline(t, 100, nil)
	m.started = *now
	start, grace := *now, time.Minute
	window := now.Add(m.cfg.TTL() + grace)
	b, u := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	*now = now.Add(20 * time.Second)
	if _, ok := deliver(m, beat(b, *now, "100")); !ok {
		t.Fatal("b's heartbeat was not recorded")
	}
	if m.Unheard(grace) != nil {
		t.Fatal("unheard peers count 20s after start")
	}
	if at, ok := m.NextDeath(grace); !ok || !at.Equal(window) {
		t.Fatalf("next death %v %v, want the end of the listening window %v", at, ok, window)
	}
	*now = window
	unheard := m.Unheard(grace)
	if unheard == nil || !unheard(u) || unheard(b) || unheard(m.deps.Self) {
		t.Fatalf("after the window: unheard nil %v; u %v (want true), b and self false", unheard == nil, unheard != nil && unheard(u))
	}
	if at, ok := m.NextDeath(grace); !ok || !at.Equal(start.Add(20*time.Second+30*time.Second+grace)) {
		t.Fatalf("next death after the window: %v %v, want b's ping expiry plus grace", at, ok)
	}
}

func beat(pid peer.ID, at time.Time, free string) heartbeat {
	return heartbeat{Peer: pid, TTL: int64(30 * time.Second), Seq: at.UnixNano(),
		Metrics: []wireValue{{Name: MetricPing, Value: "1"}, {Name: MetricFreeSpace, Value: free}}}
}

// A replayed heartbeat — the last one of a dead peer, or a "leaving" one
// after the peer came back — is dropped (ignored: not recorded, not
// forwarded): it would keep the dead peer
// alive, or move every pin of a live one. Before heartbeats carried a
// sequence, gossipsub's two-minute seen-cache was the only defence.
func TestReplayedHeartbeatsAreRejected(t *testing.T) {
	m, now := offline(t, 100, nil)
	b := testkit.PeerID(t, 1)
	last := beat(b, *now, "100")
	if v, ok := deliver(m, last); v != pubsub.ValidationAccept || !ok {
		t.Fatalf("a fresh heartbeat: %v, recorded %v", v, ok)
	}
	// b dies; an hour later someone replays its last heartbeat.
	*now = now.Add(time.Hour)
	if v, _ := deliver(m, last); v == pubsub.ValidationAccept || m.Alive(b) {
		t.Fatalf("the replayed last heartbeat of a dead peer: %v, alive %v", v, m.Alive(b))
	}
	// b comes back and leaves; it comes back again; the "leaving"
	// heartbeat replayed then changes nothing.
	leave := heartbeat{Peer: b, TTL: 1, Leaving: true, Seq: now.Add(time.Second).UnixNano()}
	*now = now.Add(2 * time.Second)
	if _, ok := deliver(m, leave); !ok || m.Alive(b) {
		t.Fatal("a genuine leaving heartbeat was not taken")
	}
	*now = now.Add(time.Second)
	if _, ok := deliver(m, beat(b, *now, "100")); !ok || !m.Alive(b) {
		t.Fatal("b is not back")
	}
	*now = now.Add(time.Second)
	if v, _ := deliver(m, leave); v == pubsub.ValidationAccept || !m.Alive(b) {
		t.Fatalf("a replayed leaving heartbeat: %v; b alive %v, want rejected and alive", v, m.Alive(b))
	}
	// A peer that restarted (no memory of b) still refuses a heartbeat
	// older than its TTL plus maxClockSkew, or one without a sequence.
	fresh, clock := offline(t, 100, nil)
	*clock = *now
	stale := beat(b, now.Add(-2*time.Hour), "100")
	if v, _ := deliver(fresh, stale); v == pubsub.ValidationAccept {
		t.Fatalf("a two-hour-old heartbeat at a restarted peer: %v", v)
	}
	noSeq := beat(b, *now, "100")
	noSeq.Seq = 0
	if v, _ := deliver(fresh, noSeq); v == pubsub.ValidationAccept {
		t.Fatalf("a heartbeat without a sequence: %v", v)
	}
	// A name that would drive a terminal is refused.
	escape := beat(testkit.PeerID(t, 7), *now, "1")
	escape.Peername = "x\x1b]0;owned\x07"
	if v, _ := deliver(m, escape); v != pubsub.ValidationReject {
		t.Fatalf("a peer name with a terminal escape: %v", v)
	}
	// A flood: heartbeats closer than minGap are ignored, not recorded.
	got := 0
	for i := range 50 {
		*now = now.Add(time.Millisecond)
		if _, ok := deliver(m, beat(b, now.Add(time.Duration(i)), fmt.Sprint(i))); ok {
			got++
		}
	}
	if got > 1 {
		t.Fatalf("%d of 50 heartbeats sent 1 ms apart were recorded, want at most 1", got)
	}
}

// The table is bounded: a swarm of keys fills it and no more; a newcomer
// takes the place of a peer gone quiet; a member takes a stranger's
// place even when every one is live. Before the bound, the table grew by
// one peer per key.
func TestHeartbeatTableIsBounded(t *testing.T) {
	members := map[peer.ID]bool{}
	m, now := offline(t, 8, func(p peer.ID) bool { return members[p] })
	for i := 1; i <= 100; i++ {
		deliver(m, beat(testkit.PeerID(t, i), *now, "1000000000"))
	}
	if n := len(m.Latest(MetricPing)); n != 8 {
		t.Fatalf("%d peers kept after 100 keys, want the bound, 8", n)
	}
	// A live stranger does not get in; a member does, in a stranger's place.
	stranger, admitted := testkit.PeerID(t, 200), testkit.PeerID(t, 201)
	members[admitted] = true
	if _, ok := deliver(m, beat(stranger, *now, "1")); ok {
		t.Fatal("a stranger got into a table full of live peers")
	}
	if _, ok := deliver(m, beat(admitted, *now, "1")); !ok || !m.Alive(admitted) {
		t.Fatal("a member was kept out of a table full of strangers")
	}
	// Once the swarm goes quiet, anyone takes its places.
	*now = now.Add(time.Minute)
	if _, ok := deliver(m, beat(stranger, *now, "1")); !ok {
		t.Fatal("a newcomer did not take the place of a peer gone quiet")
	}
	if n := len(m.Latest(MetricPing)); n != 8 {
		t.Fatalf("%d peers kept, want 8", n)
	}
}

// BenchmarkHeartbeatFlood is the CPU a heartbeat flood costs a peer, per
// heartbeat: one peer's heartbeats faster than minGap (ignored after the
// first), and fresh keys filling a full table (ignored).
func BenchmarkHeartbeatFlood(b *testing.B) {
	m, now := offline(b, 64, nil)
	for i := range 64 {
		deliver(m, beat(testkit.PeerID(b, 1000+i), *now, "1"))
	}
	flooder := testkit.PeerID(b, 1)
	b.Run("one peer, fast", func(b *testing.B) {
		for i := range b.N {
			deliver(m, beat(flooder, now.Add(time.Duration(i)), "1"))
		}
	})
	keys := make([]peer.ID, 256)
	for i := range keys {
		keys[i] = testkit.PeerID(b, 2000+i)
	}
	b.Run("fresh keys, full table", func(b *testing.B) {
		for i := range b.N {
			deliver(m, beat(keys[i%len(keys)], *now, "1"))
		}
	})
}

// On the writers' topic, which the followers of a large ring hear instead
// of the metrics topic, a heartbeat is taken only from a writer: a
// follower's (or a stranger's), even well signed and fresh, is ignored —
// not recorded, not forwarded — and a writer's passes the usual checks.
func TestOnlyWritersAreHeardOnTheWritersTopic(t *testing.T) {
	writer, follower := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	m, now := offline(t, 100, nil)
	m.deps.Writer = func(pid peer.ID) bool { return pid == writer }
	on := func(hb heartbeat) pubsub.ValidationResult {
		b, _ := json.Marshal(hb)
		return m.validateWriter(context.Background(), "", &pubsub.Message{Message: &pb.Message{From: []byte(hb.Peer), Data: b}})
	}
	if v := on(beat(follower, *now, "1")); v != pubsub.ValidationIgnore {
		t.Fatalf("a follower's heartbeat on the writers' topic: %v, want ignored", v)
	}
	if v := on(beat(writer, *now, "1")); v != pubsub.ValidationAccept {
		t.Fatalf("a writer's heartbeat on the writers' topic: %v, want accepted", v)
	}
	forged := beat(follower, *now, "1")
	b, _ := json.Marshal(forged)
	if v := m.validateWriter(context.Background(), "", &pubsub.Message{Message: &pb.Message{From: []byte(writer), Data: b}}); v != pubsub.ValidationReject {
		t.Fatalf("a writer relaying a follower's heartbeat as its own: %v, want rejected", v)
	}
}

// A peer this one lost every connection to is dead for the repair
// repair.grace after its next heartbeat was due — at most an interval plus
// grace after it went, whenever it went between two heartbeats — while
// alerts (its ping's expiry) still wait the gossip's margin. A heartbeat
// coming after all (it only lost this connection) makes it live again.
func TestADisconnectedPeerIsDeadGraceAfterItsHeartbeatWasDue(t *testing.T) {
	m, now := offline(t, 100, nil)
	grace, every := time.Minute, 10*time.Second
	b := testkit.PeerID(t, 1)
	heard := *now
	if _, ok := deliver(m, beat(b, heard, "100")); !ok {
		t.Fatal("b's heartbeat was not recorded")
	}
	*now = heard.Add(time.Second) // b goes just after its heartbeat
	m.Disconnected(b)
	due := heard.Add(every)
	if got := m.Latest(MetricPing)[0].Expire; time.Unix(0, got).Equal(due) || time.Unix(0, got).Before(due) {
		t.Fatalf("b's ping expires at %s: alerts should wait past its due time %s", time.Unix(0, got), due)
	}
	if at, ok := m.NextDeath(grace); !ok || !at.Equal(due.Add(grace)) {
		t.Fatalf("next death %v %v, want %v (due + grace)", at, ok, due.Add(grace))
	}
	*now = due.Add(grace - time.Millisecond)
	if m.Dead(grace)[b] {
		t.Fatal("b dead before its heartbeat was due + grace")
	}
	*now = due.Add(grace)
	if !m.Dead(grace)[b] {
		t.Fatalf("b not dead at its due time + grace (%s after it went; an interval + grace is %s)", now.Sub(heard.Add(time.Second)), every+grace)
	}

	// It only lost this connection: its next heartbeat brings it back, and
	// a later disconnection counts from that one.
	heard = *now
	if _, ok := deliver(m, beat(b, heard, "100")); !ok {
		t.Fatal("b's later heartbeat was not recorded")
	}
	if m.Dead(grace)[b] {
		t.Fatal("b dead after a fresh heartbeat")
	}
	*now = heard.Add(29 * time.Second) // late: its ping (30 s TTL) ends before the cut would
	m.Disconnected(b)
	if at, ok := m.NextDeath(grace); !ok || !at.Equal(heard.Add(30*time.Second+grace)) {
		t.Fatalf("next death %v %v, want its ping's expiry + grace (the cut would come later)", at, ok)
	}
}
