package crdtstate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	badger "github.com/ipfs/go-ds-badger2"
	crdt "github.com/ipfs/go-ds-crdt"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// openStamped opens the pinset of epoch e at ns, stamping what it writes
// with origin.
func openStamped(t testing.TB, store *badger.Datastore, dir, ns string, dag crdt.SessionDAGService, bc crdt.Broadcaster, origin peer.ID, e uint64) *State {
	t.Helper()
	return openDeps(t, dir, Deps{Store: store, Namespace: ns, DAG: dag, Broadcaster: bc, Origin: origin, Epoch: e})
}

// Every record is stamped with its origin and a Seq that grows with the
// origin's writes, across epochs; a copy keeps the stamps.
func TestRecordsAreStamped(t *testing.T) {
	ctx := context.Background()
	store, dir := emptyBadger(t)
	defer store.Close()
	me := testkit.PeerID(t, 1)
	s := openStamped(t, store, dir, testNS, nil, nil, me, 3)
	defer s.Close()
	var last uint64
	for i := range 3 {
		p := testPin(t, i)
		if err := s.Add(ctx, p); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, p.Cid)
		if err != nil {
			t.Fatal(err)
		}
		if got.Origin != me || got.Seq <= last || got.Seq>>seqEpochShift != 3 || p.Seq != got.Seq {
			t.Fatalf("record %d stamped %s/%d (returned %d), after %d", i, got.Origin, got.Seq, p.Seq, last)
		}
		last = got.Seq
	}
	back, err := DecodePin(EncodePin(&api.Pin{Cid: testkit.Cid(9), Origin: me, Seq: last}))
	if err != nil || back.Origin != me || back.Seq != last || len(back.Unknown) != 0 {
		t.Fatalf("stamp through the codec: %+v, %v", back, err)
	}
	if Stamp(4, 1) <= Stamp(3, 1<<39) {
		t.Fatal("a later epoch's stamp is not higher")
	}
}

func TestCoverageLate(t *testing.T) {
	me, other, gone := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3)
	cov := Coverage{Marks: Marks{me: 10, other: 10, gone: 10}, Self: me, Reach: func() Marks { return Marks{other: 20, gone: 20} },
		Gone: func(o peer.ID) bool { return o == gone }}
	for _, c := range []struct {
		origin peer.ID
		seq    uint64
		late   bool
	}{
		{"", 0, true},       // written before stamps
		{me, 10, false},     // the copy saw it
		{me, 11, true},      // this writer's own late write
		{other, 10, false},  // seen
		{other, 15, false},  // late, but its origin is live: it carries it
		{gone, 10, false},   // seen
		{gone, 15, true},    // late, its origin gone, merged here with all before it
		{gone, 21, false},   // beyond this peer's reach
		{me, 1 << 50, true}, // a later epoch of this writer
		{gone, 1 << 50, false},
	} {
		if got := cov.Late(&api.Pin{Origin: c.origin, Seq: c.seq}); got != c.late {
			t.Errorf("Late(%s/%d) = %v, want %v", c.origin, c.seq, got, c.late)
		}
	}
	cov.Gone = nil
	if cov.Late(&api.Pin{Origin: gone, Seq: 15}) {
		t.Error("with nobody gone, another origin's record was carried")
	}
	m := Marks{me: 3}
	m.Raise(Marks{me: 2, other: 5})
	if l := m.List(); len(l) != 2 || MarksOf(l)[me] != 3 || MarksOf(l)[other] != 5 {
		t.Fatalf("raised marks %+v", l)
	}
}

// The known gap of ADR 9, closed: a writer whose old epoch lags the
// maker's (it never heard of removals the maker saw before its copy) does
// not bring those pins back, yet carries its own late writes, and those of
// a writer gone for good that it holds with all that came before them —
// not those of a live writer, which carries its own (had it carried one
// the live writer then removed in the new epoch, the pin would be back).
func TestCarryOverLeavesWhatTheCopySaw(t *testing.T) {
	ctx := context.Background()
	blocks := LocalDAG(dssync.MutexWrap(ds.NewMapDatastore()), "/blocks")
	h0, h1 := &hub{}, &hub{}
	type writer struct {
		id           peer.ID
		store        *badger.Datastore
		dir          string
		link0, link1 *hubPeer
		old, cur     *State
	}
	var ws []*writer
	for i := range 4 {
		w := &writer{id: testkit.PeerID(t, i+1), link0: h0.join(), link1: h1.join()}
		w.store, w.dir = emptyBadger(t)
		w.old = openStamped(t, w.store, w.dir, testNS, blocks, w.link0, w.id, 0)
		t.Cleanup(func() {
			close(w.link0.done)
			close(w.link1.done)
			w.old.Close()
			if w.cur != nil {
				w.cur.Close()
			}
			w.store.Close()
		})
		ws = append(ws, w)
	}
	maker, lag, third, gone := ws[0], ws[1], ws[2], ws[3]
	do := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	named := func(i int, name string) *api.Pin {
		p := testPin(t, i)
		p.Name = name
		return p
	}
	for k, w := range ws[:3] {
		for i := k * 10; i < k*10+10; i++ {
			do(w.old.Add(ctx, testPin(t, i)))
		}
		do(w.old.Flush(ctx))
	}
	testkit.WaitFor(t, 30*time.Second, "the writers to agree on 30 pins", func() bool {
		d := digestOf(t, maker.old)
		return d.Pins == 30 && digestOf(t, lag.old) == d && digestOf(t, third.old) == d && digestOf(t, gone.old) == d
	})
	// The maker is cut off. It removes pin 0 (its own) and pin 10 (the
	// lagging writer's) and renames pin 20; the others, still linked,
	// write late: pin 11 renamed and pin 40 by one, pin 41 by another,
	// pin 42 by the last, which then stops for good.
	for _, w := range ws[1:] {
		h0.cut(maker.link0, w.link0, true)
	}
	do(maker.old.Rm(ctx, testkit.Cid(0)))
	do(maker.old.Rm(ctx, testkit.Cid(10)))
	do(maker.old.Add(ctx, named(20, "maker")))
	do(maker.old.Flush(ctx))
	do(lag.old.Add(ctx, named(11, "late")))
	do(lag.old.Add(ctx, testPin(t, 40)))
	do(third.old.Add(ctx, testPin(t, 41)))
	do(gone.old.Add(ctx, testPin(t, 42)))
	for _, w := range ws[1:] {
		do(w.old.Flush(ctx))
	}
	testkit.WaitFor(t, 30*time.Second, "the lagging writer to hold pins 41 and 42", func() bool {
		a, _ := lag.old.Has(ctx, testkit.Cid(41))
		b, _ := lag.old.Has(ctx, testkit.Cid(42))
		return a && b
	})
	h0.cut(gone.link0, lag.link0, true)
	h0.cut(gone.link0, third.link0, true)
	// Pin 43: a late write of the lagging writer's that nobody heard.
	h0.cut(lag.link0, third.link0, true)
	do(lag.old.Add(ctx, testPin(t, 43)))
	do(lag.old.Flush(ctx))

	ns1 := EpochNamespace(testNS, 1)
	maker.cur = openStamped(t, maker.store, maker.dir, ns1, blocks, maker.link1, maker.id, 1)
	cur, st, err := StartEpoch(ctx, maker.old, maker.cur, api.Epoch{}, 1, maker.id, time.Now(), func(b []byte) []byte { return b })
	do(err)
	rec := cur.Record
	marks := MarksOf(rec.Marks)
	if st.Pins != 28 || len(marks) != 3 || marks[gone.id] != 0 || marks[maker.id] == 0 || marks[lag.id] == 0 || marks[third.id] == 0 {
		t.Fatalf("copied %d pins with marks %+v; want 28, a mark for each writer that wrote before the cut, none for the last", st.Pins, rec.Marks)
	}
	isGone := func(o peer.ID) bool { return o == gone.id }
	join := func(w *writer) {
		t.Helper()
		w.cur = openStamped(t, w.store, w.dir, ns1, blocks, w.link1, w.id, 1)
		testkit.WaitFor(t, 30*time.Second, "the copy to reach "+w.id.String(), func() bool {
			ok, err := w.cur.Merged(ctx, cidsOf(rec.Heads))
			return ok && err == nil
		})
	}
	carry := func(w *writer) {
		t.Helper()
		cov := CoverageFor(ctx, w.old, rec, w.id, isGone)
		_, err = CarryOverAll(ctx, w.old, w.cur, cov)
		do(err)
		do(w.cur.Flush(ctx))
	}
	// Both hold the copy. Then the lagging writer hears nothing more of
	// epoch 1 for a while: meanwhile the third writer carries pin 41 over
	// and removes it; the lagging writer carries over after.
	join(third)
	join(lag)
	h1.cut(lag.link1, third.link1, true)
	h1.cut(lag.link1, maker.link1, true)
	carry(third)
	do(third.cur.Rm(ctx, testkit.Cid(41)))
	do(third.cur.Flush(ctx))
	carry(lag)
	carry(maker)
	h1.cut(lag.link1, third.link1, false)
	h1.cut(lag.link1, maker.link1, false)
	testkit.WaitFor(t, 30*time.Second, "the three writers to agree in epoch 1", func() bool {
		d := digestOf(t, maker.cur)
		return digestOf(t, lag.cur) == d && digestOf(t, third.cur) == d
	})
	for _, i := range []int{0, 10, 41} {
		if _, err := lag.cur.Get(ctx, testkit.Cid(i)); !errors.Is(err, ErrNotFound) {
			t.Errorf("pin %d, removed, is back: %v", i, err)
		}
	}
	for i, name := range map[int]string{20: "maker", 11: "late", 40: "p40", 42: "p42", 43: "p43", 1: "p1", 29: "p29"} {
		if p, err := maker.cur.Get(ctx, testkit.Cid(i)); err != nil || p.Name != name {
			t.Errorf("pin %d in epoch 1: %+v, %v; want named %q", i, p, err, name)
		}
	}
	if d := digestOf(t, maker.cur); d.Pins != 31 {
		t.Errorf("%d pins in epoch 1, want 31 (28 copied, 4 late, 1 removed)", d.Pins)
	}
}

func cidsOf(cs []api.Cid) []cid.Cid {
	out := make([]cid.Cid, len(cs))
	for i, c := range cs {
		out[i] = c.Cid
	}
	return out
}
