package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// ring is an auditor's world: pins allocated to peers, each of which
// holds what holds says, and the suspensions it asked for.
type ring struct {
	mu        sync.Mutex
	pins      []api.Pin
	holds     func(peer.ID, api.Cid) bool
	fetching  func(peer.ID, api.Cid) bool // what it does not hold, it says it is fetching (nil: no)
	asked     map[string]int              // CID key → challenges
	suspended []peer.ID
	notes     []string
}

func (r *ring) auditor(t *testing.T, cfg Config, self peer.ID, writers ...peer.ID) *Auditor {
	return NewAuditor(cfg, Deps{
		Self: self,
		Prove: func(context.Context, Challenge) ([][]byte, error) {
			t.Fatal("a round audited the auditor itself")
			return nil, nil
		},
		Ask: func(_ context.Context, pid peer.ID, ch Challenge, _ time.Duration) Outcome {
			r.mu.Lock()
			r.asked[ch.Root.KeyString()]++
			r.mu.Unlock()
			if r.holds(pid, api.NewCid(ch.Root)) {
				return Outcome{Blocks: 1}
			}
			if r.fetching != nil && r.fetching(pid, api.NewCid(ch.Root)) {
				return Outcome{Err: fmt.Errorf("%s could not prove it holds %s: %w (pinning since …)", pid, ch.Root, ErrFetching)}
			}
			return Outcome{Err: ErrTruncated}
		},
		Pins: func(_ context.Context, fn func(api.Pin) error) error {
			for _, p := range r.pins {
				if err := fn(p); err != nil {
					return err
				}
			}
			return nil
		},
		InCharge: func(string) bool { return true },
		Suspend: func(_ context.Context, pid peer.ID, note string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.suspended, r.notes = append(r.suspended, pid), append(r.notes, note)
			return nil
		},
		Exempt: func(pid peer.ID) bool {
			for _, w := range writers {
				if w == pid {
					return true
				}
			}
			return false
		},
	}, 100)
}

// A follower that stores nothing fails every audit and is suspended after
// fail_rounds rounds, once; an honest one never is; a writer that stores
// nothing is shown failing but never suspended; a follower that lost one
// pin fails only that replica, which every later round audits again.
func TestRoundsSuspendWhoStoresNothing(t *testing.T) {
	self, honest, liar, writer, lossy := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3), testkit.PeerID(t, 4), testkit.PeerID(t, 5)
	lost := testkit.Cid(7)
	r := &ring{asked: map[string]int{}, holds: func(pid peer.ID, c api.Cid) bool {
		return pid == honest || (pid == lossy && c != lost)
	}}
	for i := range 40 {
		r.pins = append(r.pins, api.Pin{Cid: testkit.Cid(i), Allocations: []peer.ID{self, honest, liar, writer, lossy}})
	}
	r.pins = append(r.pins, api.Pin{Cid: testkit.Cid(99)}) // on every peer: not audited by rounds
	cfg := Config{Interval: config.Duration(time.Hour), Sample: 4, Deadline: config.Duration(time.Second), FailRounds: 3}
	a := r.auditor(t, cfg, self, writer)
	ctx := context.Background()
	// Make sure the lost pin is audited in the first round.
	a.One(ctx, api.Pin{Cid: lost}, lossy)
	for round := 1; round <= 5; round++ {
		if n := a.Round(ctx); n < 4*cfg.Sample {
			t.Fatalf("round %d made %d audits, want at least %d", round, n, 4*cfg.Sample)
		}
		want := 0
		if round >= 3 {
			want = 1
		}
		if len(r.suspended) != want {
			t.Fatalf("after round %d: suspended %v, want the liar from round 3 on, once", round, r.suspended)
		}
	}
	if r.suspended[0] != liar || !strings.Contains(r.notes[0], "3 rounds in a row") || len(r.notes[0]) > api.MaxAdmissionNote {
		t.Fatalf("suspended %s with %q", r.suspended[0], r.notes[0])
	}
	if got := a.Failing(); len(got) != 2 || !(got[0] == liar || got[1] == liar) || !(got[0] == writer || got[1] == writer) {
		// the lossy peer's last audit may have passed
		if len(got) != 3 {
			t.Fatalf("failing peers %v, want the liar and the writer (and perhaps the lossy one)", got)
		}
	}
	if a.FailedRounds(honest) != 0 || a.FailedRounds(lossy) != 0 || a.FailedRounds(writer) != 5 {
		t.Fatalf("failed rounds: honest %d, lossy %d, writer %d", a.FailedRounds(honest), a.FailedRounds(lossy), a.FailedRounds(writer))
	}
	rep, ok := a.Replica(lost, lossy)
	if !ok || rep.Failing != 6 || !rep.LastVerified.IsZero() || !strings.HasPrefix(rep.Verdict(), "failing (6)") {
		t.Fatalf("the lost replica: %+v (%s), want failing in every round since the first audit", rep, rep.Verdict())
	}
	if rep, ok := a.Replica(lost, honest); ok && (rep.Failing != 0 || rep.LastVerified.IsZero() || rep.Verdict() != "verified") {
		t.Fatalf("the honest replica of the same pin: %+v", rep)
	}
	passed, failed, suspended := a.Counts()
	if passed == 0 || failed == 0 || suspended != 1 {
		t.Fatalf("counts: %d passed, %d failed, %d suspended", passed, failed, suspended)
	}
	if r.asked[testkit.Cid(99).KeyString()] != 0 {
		t.Fatal("a pin on every peer was audited by a round")
	}
}

// A holder still fetching a pin is neither verified nor failing until
// audit.fetch_limit after the pin's record: no failed rounds, no lost
// replica, no suspension however many rounds. Past the limit the same
// answer fails the replica, which is lost after fail_rounds (the repair
// moves it), but the peer, which never claimed the pin, is not suspended:
// the data may be nowhere to be had.
func TestFetchingFailsTheReplicaOnlyPastTheLimit(t *testing.T) {
	self, slow := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	r := &ring{asked: map[string]int{}, holds: func(peer.ID, api.Cid) bool { return false },
		fetching: func(peer.ID, api.Cid) bool { return true }}
	young := time.Now().Add(-2 * time.Hour) // past the grace, within the limit
	for i := range 4 {
		r.pins = append(r.pins, api.Pin{Cid: testkit.Cid(i), Allocations: []peer.ID{slow}, Timestamp: young})
	}
	cfg := Config{Sample: 4, Deadline: config.Duration(time.Second), FailRounds: 2,
		Grace: config.Duration(time.Hour), FetchLimit: config.Duration(24 * time.Hour)}
	a := r.auditor(t, cfg, self)
	ctx := context.Background()
	for range 5 {
		if n := a.Round(ctx); n != 4 {
			t.Fatalf("a round made %d audits, want 4", n)
		}
	}
	rep, ok := a.Replica(testkit.Cid(0), slow)
	if !ok || rep.Failing != 0 || !rep.Fetching || !strings.HasPrefix(rep.Verdict(), "fetching: still fetching (pinning since") {
		t.Fatalf("a replica still fetching: %+v (%s)", rep, rep.Verdict())
	}
	if len(r.suspended) != 0 || a.FailedRounds(slow) != 0 || len(a.Lost()) != 0 || len(a.Failing()) != 0 {
		t.Fatalf("a peer still fetching within the limit: suspended %v, failed rounds %d, lost %v, failing %v",
			r.suspended, a.FailedRounds(slow), a.Lost(), a.Failing())
	}
	if res := a.One(ctx, r.pins[0], slow); res.OK || !res.Fetching {
		t.Fatalf("an audit by hand of a holder still fetching: %+v", res)
	}
	// The same answer a day and more after the record.
	for i := range r.pins {
		r.pins[i].Timestamp = time.Now().Add(-25 * time.Hour)
	}
	for range 3 {
		a.Round(ctx)
	}
	rep, _ = a.Replica(testkit.Cid(0), slow)
	if !strings.HasPrefix(rep.Verdict(), "failing (3): still fetching") || !strings.Contains(rep.Verdict(), "after the pin was written (audit.fetch_limit 24h0m0s)") {
		t.Fatalf("past the limit: %s, want failing, naming the limit", rep.Verdict())
	}
	if lost := a.Lost(); len(lost) != 4 {
		t.Fatalf("past the limit: lost %v, want the 4 replicas (the repair moves them)", lost)
	}
	if len(r.suspended) != 0 || a.FailedRounds(slow) != 0 {
		t.Fatalf("past the limit: suspended %v, %d failed rounds; the peer never claimed the pins", r.suspended, a.FailedRounds(slow))
	}
}

// A suspension that fails is logged and counted as none; a writer-less
// ring (Suspend nil) audits without suspending.
func TestSuspendFailureIsNotCounted(t *testing.T) {
	self, liar := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	r := &ring{asked: map[string]int{}, holds: func(peer.ID, api.Cid) bool { return false }}
	r.pins = []api.Pin{{Cid: testkit.Cid(1), Allocations: []peer.ID{liar}}}
	cfg := Config{Sample: 1, Deadline: config.Duration(time.Second), FailRounds: 1}
	a := r.auditor(t, cfg, self)
	a.deps.Suspend = func(context.Context, peer.ID, string) error { return errors.New("not a writer") }
	a.Round(context.Background())
	if _, _, s := a.Counts(); s != 0 {
		t.Fatalf("%d suspended", s)
	}
}

// Every round audits one pin of each peer not verified yet, sampled or
// not, and tells Passed of each pass.
func TestRoundsAuditNewcomers(t *testing.T) {
	self, old, newcomer := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3)
	r := &ring{asked: map[string]int{}, holds: func(peer.ID, api.Cid) bool { return true }}
	for i := range 1000 {
		r.pins = append(r.pins, api.Pin{Cid: testkit.Cid(i), Allocations: []peer.ID{self, old}})
	}
	r.pins[500].Allocations = append(r.pins[500].Allocations, newcomer)
	a := r.auditor(t, Config{Sample: 1, Deadline: config.Duration(time.Second)}, self)
	unverified := map[peer.ID]bool{newcomer: true}
	var passed []peer.ID
	var mu sync.Mutex
	a.deps.Unverified = func(p peer.ID) bool { mu.Lock(); defer mu.Unlock(); return unverified[p] }
	a.deps.Passed = func(_ context.Context, p peer.ID) error {
		mu.Lock()
		defer mu.Unlock()
		passed = append(passed, p)
		delete(unverified, p)
		return nil
	}
	a.Round(context.Background())
	if _, ok := a.Replica(testkit.Cid(500), newcomer); !ok || !slices.Contains(passed, newcomer) {
		t.Fatalf("the newcomer's one pin was not audited (passed: %v)", passed)
	}
	if n := a.Round(context.Background()); n != 1 {
		t.Fatalf("once verified, a round of sample 1 made %d audits, want 1", n)
	}
}

// A peer whose heartbeats stopped (asleep, or behind a rebooting router)
// is not audited by rounds, so it never fails rounds for it: it is the
// repair's business. Audited while absent, an honest home-lab follower
// would have been suspended after three rounds of sleep.
func TestRoundsLeaveAbsentPeersAlone(t *testing.T) {
	self, asleep := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	r := &ring{asked: map[string]int{}, holds: func(peer.ID, api.Cid) bool { return false }} // unreachable: no proof
	r.pins = []api.Pin{{Cid: testkit.Cid(1), Allocations: []peer.ID{asleep}}}
	a := r.auditor(t, Config{Sample: 1, Deadline: config.Duration(time.Second), FailRounds: 1}, self)
	awake := false
	a.deps.Live = func() []peer.ID {
		if awake {
			return []peer.ID{self, asleep}
		}
		return []peer.ID{self}
	}
	for range 3 {
		if n := a.Round(context.Background()); n != 0 {
			t.Fatalf("a round audited a peer without heartbeats (%d audits)", n)
		}
	}
	if len(r.suspended) != 0 {
		t.Fatalf("suspended %v while asleep", r.suspended)
	}
	awake = true
	if n := a.Round(context.Background()); n != 1 || len(r.suspended) != 1 {
		t.Fatalf("awake and failing: %d audits, suspended %v", n, r.suspended)
	}
}

// Lost lists a replica once its last fail_rounds audits all failed, and
// tells the repair at that moment; a pass takes it off the list.
func TestLostReplicas(t *testing.T) {
	self, lossy := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	var lostCalls atomic.Int32
	r := &ring{asked: map[string]int{}, holds: func(_ peer.ID, c api.Cid) bool { return c != testkit.Cid(1) }}
	a := r.auditor(t, Config{Sample: 1, Deadline: config.Duration(time.Second), FailRounds: 2}, self)
	a.deps.Lost = func() { lostCalls.Add(1) }
	ctx := context.Background()
	a.One(ctx, api.Pin{Cid: testkit.Cid(2)}, lossy)
	a.One(ctx, api.Pin{Cid: testkit.Cid(1)}, lossy)
	if got := a.Lost(); len(got) != 0 {
		t.Fatalf("after one failure: %v", got)
	}
	a.One(ctx, api.Pin{Cid: testkit.Cid(1)}, lossy)
	got := a.Lost()
	if len(got) != 1 || !slices.Equal(got[testkit.Cid(1).Key()], []peer.ID{lossy}) {
		t.Fatalf("after two failures: %v", got)
	}
	testkit.WaitFor(t, 5*time.Second, "the repair told", func() bool { return lostCalls.Load() == 1 })
	r.holds = func(peer.ID, api.Cid) bool { return true }
	a.One(ctx, api.Pin{Cid: testkit.Cid(1)}, lossy)
	if got := a.Lost(); len(got) != 0 {
		t.Fatalf("after a pass: %v", got)
	}
}

// A pin written less than audit.grace ago is not audited by rounds: its
// holders may still be fetching it, and an honest peer must not fail for
// that. Once older, it is.
func TestRoundsGiveNewPinsTime(t *testing.T) {
	self, holder := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	r := &ring{asked: map[string]int{}, holds: func(peer.ID, api.Cid) bool { return false }}
	r.pins = []api.Pin{{Cid: testkit.Cid(1), Allocations: []peer.ID{holder}, Timestamp: time.Now()}}
	a := r.auditor(t, Config{Sample: 1, Deadline: config.Duration(time.Second), Grace: config.Duration(time.Hour)}, self)
	if n := a.Round(context.Background()); n != 0 {
		t.Fatalf("a pin written just now was audited (%d)", n)
	}
	r.pins[0].Timestamp = time.Now().Add(-2 * time.Hour)
	if n := a.Round(context.Background()); n != 1 {
		t.Fatalf("a pin written 2 h ago: %d audits, want 1", n)
	}
}

// A peer that passes most audits but lost fail_rounds replicas (each
// failed fail_rounds audits in a row) is suspended whole: it dropped data
// it said it held. Its records start over after, and a pin it lost once
// is not enough.
func TestLosingReplicasSuspends(t *testing.T) {
	self, dropper := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	lost := map[string]bool{testkit.Cid(3).Key(): true, testkit.Cid(13).Key(): true, testkit.Cid(23).Key(): true}
	r := &ring{asked: map[string]int{}, holds: func(_ peer.ID, c api.Cid) bool { return !lost[c.Key()] }}
	for i := range 40 {
		r.pins = append(r.pins, api.Pin{Cid: testkit.Cid(i), Allocations: []peer.ID{self, dropper}})
	}
	a := r.auditor(t, Config{Sample: 40, Deadline: config.Duration(time.Second), FailRounds: 3}, self)
	for round := 1; round <= 3; round++ {
		a.Round(context.Background())
		if want := round / 3; len(r.suspended) != want {
			t.Fatalf("after round %d: suspended %v", round, r.suspended)
		}
	}
	if !strings.Contains(r.notes[0], "3 of its replicas failed 3 audits in a row") {
		t.Fatalf("note %q", r.notes[0])
	}
	if got := a.Lost(); len(got) != 0 {
		t.Fatalf("after the suspension its records stay: %v", got)
	}
}

// Silence is judged by rounds. A peer cut off (not heard from since the
// challenge: router down, asleep) fails nothing. A peer heard from that
// answers none of a writer's challenges (a link cut one way, or a peer
// shutting writers out) fails no replica, and is suspended only once that
// has lasted audit.silence_limit and fail_rounds rounds. A peer that
// answers some challenges of a round and stays silent, twice, on others
// (where it has no proof) fails those replicas, which move after
// fail_rounds. An audit by hand records no silence.
func TestSilenceIsJudgedByRounds(t *testing.T) {
	self, cut, mute, picky := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3), testkit.PeerID(t, 4)
	held, dropped := testkit.Cid(1), testkit.Cid(2)
	r := &ring{asked: map[string]int{}}
	r.pins = []api.Pin{{Cid: held, Allocations: []peer.ID{cut, mute, picky}}, {Cid: dropped, Allocations: []peer.ID{cut, mute, picky}}}
	cfg := Config{Sample: 2, Deadline: config.Duration(time.Second), FailRounds: 2, SilenceLimit: config.Duration(time.Hour)}
	var asks atomic.Int32
	setup := func(a *Auditor) {
		a.deps.Ask = func(_ context.Context, pid peer.ID, ch Challenge, _ time.Duration) Outcome {
			asks.Add(1)
			if pid == picky && ch.Root.Equals(held.Cid) {
				return Outcome{Blocks: 1}
			}
			return Outcome{Err: fmt.Errorf("%s did not answer: %w: i/o deadline reached", pid, ErrNoAnswer)}
		}
		a.deps.HeardSince = func(pid peer.ID, _ time.Time) bool { return pid != cut }
		a.deps.Settle = 10 * time.Millisecond
	}
	a := r.auditor(t, cfg, self)
	setup(a)
	a.Round(context.Background())
	// 6 challenges, each of the 5 unanswered asked again.
	if n := asks.Load(); n != 6+5 {
		t.Fatalf("%d challenges in a round, want 11", n)
	}
	for range 2 {
		a.Round(context.Background())
	}
	for _, pid := range []peer.ID{cut, mute} {
		if rec, ok := a.Peers.Get(pid); ok {
			t.Fatalf("%s has a record: %+v", pid, rec)
		}
		for _, c := range []api.Cid{held, dropped} {
			if rep, ok := a.Replica(c, pid); ok && rep.Failing > 0 {
				t.Fatalf("silence cost %s a replica: %+v", pid, rep)
			}
		}
	}
	if len(r.suspended) != 0 {
		t.Fatalf("suspended %v within the silence limit", r.suspended)
	}
	if rep, _ := a.Replica(dropped, picky); rep.Failing != 3 || !strings.Contains(rep.LastError, "did not answer") {
		t.Fatalf("the picky peer's silent replica: %+v, want failing 3 times", rep)
	}
	if lost := a.Lost(); !slices.Equal(lost[dropped.Key()], []peer.ID{picky}) || len(lost) != 1 {
		t.Fatalf("lost replicas %v, want only the picky peer's silent one", lost)
	}

	// Past the limit (0 here: fail_rounds rounds), the mute peer goes.
	cfg.SilenceLimit = 0
	r.suspended, r.notes = nil, nil
	a = r.auditor(t, cfg, self)
	setup(a)
	for range 2 {
		a.Round(context.Background())
	}
	if !slices.Contains(r.suspended, mute) || slices.Contains(r.suspended, cut) {
		t.Fatalf("past the silence limit: suspended %v (%v), want the mute peer, not the one cut off", r.suspended, r.notes)
	}
	if res := a.One(context.Background(), api.Pin{Cid: dropped}, picky); res.OK || !strings.Contains(res.Error, "did not answer") {
		t.Fatalf("an audit by hand: %+v", res)
	}
	if rep, _ := a.Replica(dropped, picky); rep.Failing != 2 {
		t.Fatalf("an audit by hand counted silence: %+v", rep)
	}
}

// Check challenges every peer a pin is allocated to, or the one asked
// for (refusing a peer the pin is not on), and Annotate shows each
// replica's verdict in a status.
func TestCheckAndAnnotate(t *testing.T) {
	self, honest, liar, stranger := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3), testkit.PeerID(t, 4)
	r := &ring{asked: map[string]int{}, holds: func(pid peer.ID, c api.Cid) bool { return pid == honest }}
	a := r.auditor(t, Config{Interval: config.Duration(time.Hour), Sample: 1, Deadline: config.Duration(time.Second), FailRounds: 3}, self)
	ctx := context.Background()
	pin := api.Pin{Cid: testkit.Cid(1), Allocations: []peer.ID{honest, liar}}
	res, err := a.Check(ctx, pin, []peer.ID{honest, liar, stranger}, "")
	if err != nil || len(res) != 2 || !res[0].OK || res[1].OK {
		t.Fatalf("check of both replicas: %+v %v, want honest passing and liar failing", res, err)
	}
	if _, err := a.Check(ctx, pin, nil, stranger); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("check of a peer the pin is not on: %v, want ErrBadRequest", err)
	}
	if res, err := a.Check(ctx, pin, nil, liar); err != nil || len(res) != 1 || res[0].OK {
		t.Fatalf("check of the liar alone: %+v %v", res, err)
	}
	g := api.GlobalPinInfo{Cid: pin.Cid, PeerMap: map[string]api.PinInfoShort{
		honest.String(): {}, liar.String(): {}, stranger.String(): {}}}
	g = a.Annotate(g)
	if pi := g.PeerMap[honest.String()]; pi.LastVerified.IsZero() || pi.Audit == "" {
		t.Errorf("honest replica: %+v, want a verdict and when it was verified", pi)
	}
	if pi := g.PeerMap[liar.String()]; pi.Audit == "" || pi.Audit == g.PeerMap[honest.String()].Audit {
		t.Errorf("liar replica: %+v, want a failing verdict", pi)
	}
	if pi := g.PeerMap[stranger.String()]; pi.Audit != "" {
		t.Errorf("a replica never audited: %+v, want no verdict", pi)
	}
}
