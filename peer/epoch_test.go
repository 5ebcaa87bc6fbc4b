package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/trust"
)

func dataPin(i int) api.Pin { return api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1} }

func epochOf(p *Peer) uint64 { return p.run.Load().cur.N() }

// sameDigest waits until every peer has the same digest, of want pins.
func sameDigest(t *testing.T, what string, want uint64, ps ...*Peer) {
	t.Helper()
	testkit.WaitFor(t, time.Minute, what, func() bool {
		first, err := ps[0].Digest(context.Background())
		if err != nil || first.Pins != want {
			return false
		}
		for _, p := range ps[1:] {
			if d, err := p.Digest(context.Background()); err != nil || d != first {
				return false
			}
		}
		return true
	})
}

// A writer starts epoch 1 while another writer writes to epoch 0: every
// peer switches, the late writes are carried over, removed pins stay
// removed, epoch 0 is dropped everywhere, writes after the switch
// replicate, a restarted follower comes back in epoch 1, and a new peer
// starts in epoch 1 from a snapshot.
func TestEpochSwitchAcrossTheRing(t *testing.T) {
	ctx := context.Background()
	ka, kb := newWriteKey(t), newWriteKey(t)
	trusted := []trust.PublicKey{ka.Public(), kb.Public()}
	a := startClusterPeer(t, "ring", ka, trusted)
	addr := a.P2PAddrs()[0].String()
	b := startClusterPeer(t, "ring", kb, trusted, addr)
	fcfg, fdir := clusterPeerConfig(t, "ring", nil, trusted, nil, addr)
	f, err := New(ctx, fcfg, fdir)
	if err != nil {
		t.Fatal(err)
	}
	fclosed := false
	t.Cleanup(func() {
		if !fclosed {
			f.Close()
		}
	})
	// History: 300 pins, each removed and pinned again twice, 100 of
	// them removed for good.
	for round := range 3 {
		for i := range 300 {
			if round > 0 {
				if _, err := a.Unpin(ctx, testkit.Cid(i)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.Pin(ctx, dataPin(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.st().Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if _, err := a.Unpin(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	sameDigest(t, "200 pins everywhere", 200, a, b, f)
	before, err := a.st().History(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// b writes to epoch 0 while a makes epoch 1: b's writes are carried
	// over when b switches.
	late := make(chan error, 1)
	go func() {
		for i := 1000; i < 1020; i++ {
			if _, err := b.Pin(ctx, dataPin(i)); err != nil {
				late <- err
				return
			}
		}
		_, err := b.Unpin(ctx, testkit.Cid(150))
		late <- err
	}()
	rec, err := a.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-late; err != nil {
		t.Fatal(err)
	}
	if rec.Epoch != 1 || epochOf(a) != 1 || len(rec.Heads) == 0 {
		t.Fatalf("record %+v, a in epoch %d", rec, epochOf(a))
	}
	testkit.WaitFor(t, time.Minute, "every peer in epoch 1", func() bool {
		return epochOf(b) == 1 && epochOf(f) == 1
	})
	sameDigest(t, "the late writes carried over everywhere", 219, a, b, f)
	for _, p := range []*Peer{a, b, f} {
		if _, err := p.PinGet(ctx, testkit.Cid(1019)); err != nil {
			t.Fatalf("b's late pin missing: %v", err)
		}
		for _, gone := range []int{7, 150} {
			if _, err := p.PinGet(ctx, testkit.Cid(gone)); err == nil {
				t.Fatalf("pin %d, removed, is back", gone)
			}
		}
	}
	after, err := a.st().History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("history at the writer: %+v in epoch 0, %+v in epoch 1", before, after)
	if after.Elements+after.Tombstones >= (before.Elements+before.Tombstones)/2 {
		t.Fatalf("epoch 1 holds %+v, epoch 0 held %+v: no smaller", after, before)
	}
	testkit.WaitFor(t, 30*time.Second, "epoch 0 dropped everywhere", func() bool {
		for _, p := range []*Peer{a, b, f} {
			ns := crdtstate.StateNamespace(p.ns, 0)
			if empty, err := crdtstate.IsEmpty(p.store, ns, ns); err != nil || !empty {
				return false
			}
		}
		return true
	})

	// Operators see it: health and /metrics name the epoch, the drop
	// and the history.
	h := f.Health(ctx)
	if h.Store.Epoch != 1 || h.Store.EpochSince == nil || h.Store.LastDrop == nil {
		t.Fatalf("follower's health store: %+v", h.Store)
	}
	testkit.WaitFor(t, 10*time.Second, "/metrics naming epoch 1 and its history", func() bool {
		resp, err := http.Get("http://" + a.APIAddr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "pinring_state_epoch 1\n") &&
			strings.Contains(string(b), "pinring_state_history_entries ") &&
			!strings.Contains(string(b), "pinring_state_epoch_last_drop_timestamp_seconds 0\n")
	})

	// Writes in epoch 1 replicate both ways.
	if _, err := b.Pin(ctx, dataPin(2000)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unpin(ctx, testkit.Cid(1000)); err != nil {
		t.Fatal(err)
	}
	sameDigest(t, "epoch 1's own writes everywhere", 219, a, b, f)

	// A restarted follower opens epoch 1.
	want, _ := a.Digest(ctx)
	fclosed = true
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f2, err := New(ctx, fcfg, fdir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f2.Close() })
	if got, _ := f2.Digest(ctx); epochOf(f2) != 1 || got != want {
		t.Fatalf("restarted follower: epoch %d, digest %+v, want %+v", epochOf(f2), got, want)
	}

	// A new peer starts in epoch 1 from a snapshot.
	fresh := startClusterPeer(t, "ring", nil, trusted, addr)
	if fresh.snapshot == nil || epochOf(fresh) != 1 {
		t.Fatalf("new peer: snapshot %+v, epoch %d", fresh.snapshot, epochOf(fresh))
	}
	if got, _ := fresh.Digest(ctx); got != want {
		t.Fatalf("new peer's digest %+v, want %+v", got, want)
	}
}

// Epoch records from the network are checked: one signed by a key the
// cluster does not trust, one whose maker is not its sealer, one naming
// no heads and one too large are all refused, and the peer stays in its
// epoch.
func TestForgedEpochRecordsAreRefused(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	a := startClusterPeer(t, "ring", key, nil)
	s := newStranger(t, a, "/pinring/ring/epochs")
	head := api.NewCid(testkit.Cid(1).Cid)
	rec := func(by string) []byte {
		b, _ := json.Marshal(api.Epoch{Epoch: 5, Heads: []api.Cid{head}, Made: time.Now(), By: a.PeerID()})
		if by == "self" {
			b, _ = json.Marshal(api.Epoch{Epoch: 5, Heads: []api.Cid{head}, Made: time.Now(), By: s.h.ID()})
		}
		return b
	}
	stranger := newWriteKey(t)
	noHeads, _ := json.Marshal(api.Epoch{Epoch: 5, Made: time.Now(), By: s.h.ID(), Digest: api.StateDigest{Pins: 3}})
	withMarks := func(ms []api.Mark) []byte {
		b, _ := json.Marshal(api.Epoch{Epoch: 5, Heads: []api.Cid{head}, Made: time.Now(), By: s.h.ID(), Marks: ms})
		return b
	}
	x, y := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	if x > y {
		x, y = y, x
	}
	var tooMany []api.Mark
	for i := range api.MaxEpochMarks + 1 {
		tooMany = append(tooMany, api.Mark{Origin: testkit.PeerID(t, i), Seq: 1})
	}
	slices.SortFunc(tooMany, func(a, b api.Mark) int { return strings.Compare(string(a.Origin), string(b.Origin)) })
	seal := trust.NewSigner(key, "ring", string(s.h.ID())).SealEpoch
	if env := seal(withMarks(tooMany[:api.MaxEpochMarks])); len(env) > maxEpochMessage {
		t.Fatalf("a record with the most marks allowed seals into %d bytes, over the topic's bound %d", len(env), maxEpochMessage)
	}
	for _, tc := range []struct {
		name string
		env  []byte
	}{
		{"unknown key", trust.NewSigner(stranger, "ring", string(s.h.ID())).SealEpoch(rec("self"))},
		{"maker is not the sealer", trust.NewSigner(key, "ring", string(s.h.ID())).SealEpoch(rec("other"))},
		{"pins and no heads", trust.NewSigner(key, "ring", string(s.h.ID())).SealEpoch(noHeads)},
		{"heads as an epoch", trust.NewSigner(key, "ring", string(s.h.ID())).Seal(rec("self"))},
		{"marks out of order", seal(withMarks([]api.Mark{{Origin: y, Seq: 1}, {Origin: x, Seq: 1}}))},
		{"an origin marked twice", seal(withMarks([]api.Mark{{Origin: x, Seq: 1}, {Origin: x, Seq: 9}}))},
		{"a mark of no peer", seal(withMarks([]api.Mark{{Origin: "nobody", Seq: 1}}))},
		{"too many marks", seal(withMarks(tooMany))},
		{"too large", make([]byte, maxEpochMessage+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.checkEpoch(tc.env); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Over the network: every one is dropped (counted), none is adopted.
	time.Sleep(time.Second) // the topic's mesh
	for _, env := range [][]byte{
		trust.NewSigner(stranger, "ring", string(s.h.ID())).SealEpoch(rec("self")),
		trust.NewSigner(key, "ring", string(s.h.ID())).SealEpoch(noHeads),
	} {
		if err := s.topic.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "both forged records dropped", func() bool { return a.epochRejected.Load() == 2 })
	if epochOf(a) != 0 || a.switching.Load() {
		t.Fatalf("a is in epoch %d (switching %v) after forged records", epochOf(a), a.switching.Load())
	}
	// A snapshot stream is read only past a genuine record: a forged one,
	// or a record frame over the bound, fails the load before anything is
	// written, and the peer stays in its epoch.
	for name, env := range map[string][]byte{
		"forged":    trust.NewSigner(stranger, "ring", string(s.h.ID())).SealEpoch(rec("self")),
		"too large": make([]byte, maxEpochMessage+1),
	} {
		var stream bytes.Buffer
		frame.Write(&stream, env)
		stream.WriteString("anything")
		if _, err := a.loadSnapshot(ctx, &stream); err == nil {
			t.Fatalf("a snapshot behind a %s epoch record was loaded", name)
		}
	}
	if cur, err := crdtstate.LoadCurrentEpoch(ctx, a.store, a.ns); err != nil || cur.N() != 0 {
		t.Fatalf("after the forged snapshots: epoch %d, %v", cur.N(), err)
	}
	// A genuine record signed by a trusted key, from any sender, is
	// accepted (a peer relays its writer's record): it names heads the
	// peer cannot merge, so it stays in epoch 0 until state.epoch_wait.
	if _, err := a.checkEpoch(trust.NewSigner(key, "ring", string(s.h.ID())).SealEpoch(rec("self"))); err != nil {
		t.Fatalf("a record signed by a trusted key: %v", err)
	}
}

// cluster-peer state compact's path: a stopped writer starts epoch 1 on
// its own; at its next start it is in epoch 1 with the same pins, and a
// follower that was in epoch 0 switches to it.
func TestOfflineCompactThenTheRingFollows(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	trusted := []trust.PublicKey{key.Public()}
	acfg, adir := clusterPeerConfig(t, "ring", key, trusted, nil)
	a, err := New(ctx, acfg, adir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if _, err := a.Unpin(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := a.Digest(ctx)
	f := startClusterPeer(t, "ring", nil, trusted, a.P2PAddrs()[0].String())
	sameDigest(t, "the follower synced", 150, a, f)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	o, err := peerconfig.OpenOffline(ctx, acfg, adir, false)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := peerconfig.LoadIdentity(adir)
	self, _ := peer.IDFromPrivateKey(sk)
	rec, st, err := o.Compact(ctx, self, trust.NewSigner(key, "ring", string(self)).SealEpoch, time.Now())
	if err != nil || rec.Epoch != 1 || st.Pins != 150 || st.Digest != want {
		t.Fatalf("offline compact: %+v %+v %v (want digest %+v)", rec, st, err, want)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	a2, err := New(ctx, acfg, adir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a2.Close() })
	if got, _ := a2.Digest(ctx); epochOf(a2) != 1 || got != want {
		t.Fatalf("after compact: epoch %d, digest %+v, want %+v", epochOf(a2), got, want)
	}
	a2.node.Connect(f.P2PAddrs()...)
	testkit.WaitFor(t, time.Minute, "the follower in epoch 1", func() bool { return epochOf(f) == 1 })
	if _, err := a2.Pin(ctx, dataPin(500)); err != nil {
		t.Fatal(err)
	}
	sameDigest(t, fmt.Sprintf("epoch 1 at both (%s)", "after a write"), 151, a2, f)
}

// A writer and a follower asleep while the ring moves to a new epoch and
// removes pins there: the writer's writes made while it slept (an offline
// import, never sent) are carried over, and the pins removed meanwhile —
// which the sleeper's old epoch still holds — stay removed.
func TestSleepersAcrossAnEpoch(t *testing.T) {
	ctx := context.Background()
	ka, kb := newWriteKey(t), newWriteKey(t)
	trusted := []trust.PublicKey{ka.Public(), kb.Public()}
	a := startClusterPeer(t, "ring", ka, trusted)
	addr := a.P2PAddrs()[0].String()
	bcfg, bdir := clusterPeerConfig(t, "ring", kb, trusted, nil, addr)
	fcfg, fdir := clusterPeerConfig(t, "ring", nil, trusted, nil, addr)
	start := func(cfg peerconfig.Config, dir string) *Peer {
		p, err := New(ctx, cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b, f := start(bcfg, bdir), start(fcfg, fdir)
	for i := range 100 {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	sameDigest(t, "100 pins everywhere", 100, a, b, f)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// b, asleep, imports 10 pins: acknowledged in epoch 0, sent to nobody.
	o, err := peerconfig.OpenOffline(ctx, bcfg, bdir, false)
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := 500; i < 510; i++ {
		json.NewEncoder(&lines).Encode(dataPin(i))
	}
	if n, err := o.Import(ctx, strings.NewReader(lines.String()), nil); err != nil || n != 10 {
		t.Fatalf("offline import: %d %v", n, err)
	}
	o.Close()
	// The ring moves on: epoch 1, then removals in it.
	for i := 100; i < 120; i++ {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := a.Unpin(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Both wake in epoch 0 and adopt epoch 1.
	b, f = start(bcfg, bdir), start(fcfg, fdir)
	t.Cleanup(func() { b.Close(); f.Close() })
	testkit.WaitFor(t, time.Minute, "both sleepers in epoch 1", func() bool { return epochOf(b) == 1 && epochOf(f) == 1 })
	sameDigest(t, "the sleeper's writes carried over, the removals kept", 125, a, b, f)
	for _, p := range []*Peer{a, b, f} {
		if _, err := p.PinGet(ctx, testkit.Cid(509)); err != nil {
			t.Fatalf("the sleeping writer's pin is missing: %v", err)
		}
		if _, err := p.PinGet(ctx, testkit.Cid(3)); err == nil {
			t.Fatal("a pin removed while they slept is back")
		}
	}
}

// A peer back from sleep hears of the current epoch when it joins the
// epochs topic (a writer greets it), not at the record's next repeat:
// epochRepeat rebroadcast intervals, two minutes here. Until it does, it
// syncs the old epoch, whose history is what compaction dropped.
func TestAReturningPeerIsGreetedWithTheEpoch(t *testing.T) {
	ctx := context.Background()
	slow := func(c *peerconfig.Config) { c.State.RebroadcastInterval = config.Duration(20 * time.Second) }
	ka := newWriteKey(t)
	trusted := []trust.PublicKey{ka.Public()}
	a := startClusterPeerWith(t, "ring", ka, trusted, slow)
	fcfg, fdir := clusterPeerConfig(t, "ring", nil, trusted, slow, a.P2PAddrs()[0].String())
	f, err := New(ctx, fcfg, fdir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	sameDigest(t, "50 pins at both", 50, a, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 60; i++ {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	woke := time.Now()
	f, err = New(ctx, fcfg, fdir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	testkit.WaitFor(t, 20*time.Second, "the returning follower in epoch 1", func() bool { return epochOf(f) == 1 })
	sameDigest(t, "epoch 1's pins at the returning follower", 60, a, f)
	t.Logf("in epoch 1 with every pin %s after waking; %d greetings", time.Since(woke).Round(time.Millisecond), a.epochGreetings.Load())
	if a.epochGreetings.Load() == 0 {
		t.Fatal("the writer greeted no join with its epoch record")
	}
}

// compactingFast is a peer's config for epoch tests: compaction at ratio ×
// live + floor, checked every 100 ms, heartbeats every 200 ms and a short
// repair.grace (a writer starts epochs only once its monitor has listened
// a TTL plus that grace).
func compactingFast(ratio, floor int) func(*peerconfig.Config) {
	return func(c *peerconfig.Config) {
		c.State.CompactRatio, c.State.CompactFloor = ratio, floor
		c.State.CompactCheck = config.Duration(100 * time.Millisecond)
		c.Monitor.Interval = config.Duration(200 * time.Millisecond)
		c.Repair.Grace = config.Duration(300 * time.Millisecond)
	}
}

// With state.compact_ratio set, the writer in charge starts a new epoch on
// its own once the history outgrows ratio × live + floor, and not before;
// and not while fewer than half the writers it has heard from are live
// (of two sides of a split, one at most starts epochs).
func TestAutomaticCompaction(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	fast := compactingFast(2, 100)
	a := startClusterPeerWith(t, "ring", key, nil, fast)
	b := startClusterPeerWith(t, "ring", key, nil, fast, a.P2PAddrs()[0].String())
	for i := range 100 {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "b to hold the pins", func() bool {
		d, _ := b.Digest(ctx)
		return d.Pins == 100
	})
	// A stranger's heartbeat claims epoch 99: only a writer's claim holds
	// a writer back (else anyone could stop every compaction).
	s := newStranger(t, a, "/pinring/ring/metrics")
	time.Sleep(time.Second) // the topic's mesh
	claim, _ := json.Marshal(map[string]any{"peer": s.h.ID(), "peername": "liar", "ttl": int64(time.Hour),
		"seq": time.Now().UnixNano(), "metrics": []map[string]string{{"name": "ping"}, {"name": "epoch", "value": "99"}}})
	if err := s.topic.Publish(ctx, claim); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "a to hear the stranger's claim", func() bool {
		for _, mt := range a.monitor.LatestValid(pubsubmon.MetricEpoch) {
			if mt.Peer == s.h.ID() && mt.Value == "99" {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // several checks: 100 entries, under 2 × 100 + 100
	if epochOf(a) != 0 {
		t.Fatalf("epoch %d with no history", epochOf(a))
	}
	churn := func() {
		t.Helper()
		// Each unpin and pin packed apart (else a batch folds them
		// into no change).
		for range 2 {
			for i := range 100 {
				if _, err := a.Unpin(ctx, testkit.Cid(i)); err != nil {
					t.Fatal(err)
				}
			}
			a.st().Flush(ctx)
			for i := range 100 {
				if _, err := a.Pin(ctx, dataPin(i)); err != nil {
					t.Fatal(err)
				}
			}
			a.st().Flush(ctx)
		}
	}
	churn()
	testkit.WaitFor(t, 30*time.Second, "a new epoch started on its own (by a or b), both in it", func() bool {
		return epochOf(a) == 1 && epochOf(b) == 1
	})
	if d, _ := a.Digest(ctx); d.Pins != 100 {
		t.Fatalf("%d pins after the automatic epoch, want 100", d.Pins)
	}
	// b stops: a is one of two writers it has heard from.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "b's heartbeat to expire at a", func() bool {
		return len(a.liveTrusted()) == 1
	})
	churn()
	time.Sleep(2 * time.Second) // twenty checks
	if epochOf(a) != 1 {
		t.Fatalf("a alone of two writers started epoch %d", epochOf(a))
	}
	if h := a.history.Load(); h == nil || h.Elements+h.Tombstones <= 2*h.Live+100 {
		t.Fatalf("history %+v: not over the threshold, the check proved nothing", h)
	}
}

// A writer stopped in the middle of its copy leaves a part of the next
// epoch on disk that it never announced: its next start drops it, so that
// the epoch it starts later (or hears of) is not merged with that part —
// here, a pin the unfinished copy held that the pinset no longer does.
func TestAStopMidCopyLeavesNothingBehind(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	acfg, adir := clusterPeerConfig(t, "ring", key, nil, nil)
	a, err := New(ctx, acfg, adir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := a.Pin(ctx, dataPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// What the stop left: epoch 1's namespace holding pin 99.
	path := acfg.DatastorePath(adir)
	store, err := crdtstate.OpenBadger(path)
	if err != nil {
		t.Fatal(err)
	}
	ns := crdtstate.StateNamespace("/pinring/ring", 1)
	part, err := crdtstate.New(ctx, acfg.State, crdtstate.Deps{Store: store, Namespace: ns, JournalDir: crdtstate.JournalDir(path, ns)})
	if err != nil {
		t.Fatal(err)
	}
	junk := dataPin(99)
	if err := part.Add(ctx, &junk); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(part.Flush(ctx), part.Close()); err != nil {
		t.Fatal(err)
	}
	if left, err := crdtstate.EpochsAfter(store, "/pinring/ring", 0); err != nil || !slices.Equal(left, []uint64{1}) {
		t.Fatalf("epochs after 0 on disk: %v, %v; want [1]", left, err)
	}
	store.Close()

	a, err = New(ctx, acfg, adir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if left, err := crdtstate.EpochsAfter(a.store, a.ns, 0); err != nil || len(left) != 0 {
		t.Fatalf("after the restart, epochs after 0 on disk: %v, %v", left, err)
	}
	if _, err := a.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Digest(ctx); epochOf(a) != 1 || d.Pins != 10 {
		t.Fatalf("epoch %d with %d pins, want epoch 1 with 10", epochOf(a), d.Pins)
	}
	if _, err := a.PinGet(ctx, testkit.Cid(99)); err == nil {
		t.Fatal("the unfinished copy's pin is in the new epoch")
	}
}
