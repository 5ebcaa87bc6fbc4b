package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	badger "github.com/ipfs/go-ds-badger2"
	crdt "github.com/ipfs/go-ds-crdt"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// hub is an in-process broadcaster between replicas: what one broadcasts
// every other receives, except over a cut link.
type hub struct {
	mu    sync.Mutex
	peers []*hubPeer
	cuts  map[[2]*hubPeer]bool
}

type hubPeer struct {
	h    *hub
	in   chan []byte
	done chan struct{}
}

func (h *hub) join() *hubPeer {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &hubPeer{h: h, in: make(chan []byte, 4096), done: make(chan struct{})}
	h.peers = append(h.peers, p)
	return p
}

// cut stops (or, with on false, restores) the link between a and b.
func (h *hub) cut(a, b *hubPeer, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cuts == nil {
		h.cuts = map[[2]*hubPeer]bool{}
	}
	h.cuts[[2]*hubPeer{a, b}], h.cuts[[2]*hubPeer{b, a}] = on, on
}

func (p *hubPeer) Broadcast(_ context.Context, data []byte) error {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	for _, q := range p.h.peers {
		if q != p && !p.h.cuts[[2]*hubPeer{p, q}] {
			select {
			case q.in <- data:
			default: // a full inbox drops, as gossip may; rebroadcasts repair
			}
		}
	}
	return nil
}

func (p *hubPeer) Next(ctx context.Context) ([]byte, error) {
	select {
	case d := <-p.in:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, crdt.ErrNoMoreBroadcast
	}
}

// openAt opens the pinset at namespace ns in store, with the given DAG,
// broadcaster and clock (nil: the defaults).
func openAt(t testing.TB, store *badger.Datastore, dir, ns string, dag crdt.SessionDAGService, bc crdt.Broadcaster, now func() time.Time) *State {
	t.Helper()
	return openDeps(t, dir, Deps{Store: store, Namespace: ns, DAG: dag, Broadcaster: bc, Now: now})
}

// openDeps opens the pinset d describes, with its journal under dir and
// heads rebroadcast every 200 ms.
func openDeps(t testing.TB, dir string, d Deps) *State {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RebroadcastInterval = config.Duration(200 * time.Millisecond)
	d.JournalDir = JournalDir(dir, d.Namespace)
	s, err := New(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func digestOf(t testing.TB, s *State) api.StateDigest {
	t.Helper()
	d, err := s.Digest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// churn writes n pins, then rounds times removes and re-adds each.
func churn(t testing.TB, s *State, n, rounds int) {
	t.Helper()
	ctx := context.Background()
	write := func(f func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Packed now, so that the next round's change of a pin is a
		// delta of its own (not folded into this one's before packing).
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(func(i int) error { return s.Add(ctx, testPin(t, i)) })
	for range rounds {
		write(func(i int) error { return s.Rm(ctx, testkit.Cid(i)) })
		write(func(i int) error { return s.Add(ctx, testPin(t, i)) })
	}
}

// A new epoch holds the live pins, byte for byte, and none of the
// history; the old epoch's namespace goes whole, and the new one survives
// a restart.
func TestNewEpochHoldsTheLivePinsOnly(t *testing.T) {
	ctx := context.Background()
	store, dir := emptyBadger(t)
	defer store.Close()
	old := openAt(t, store, dir, testNS, nil, nil, nil)
	churn(t, old, 500, 4)
	for i := 0; i < 500; i += 4 {
		if err := old.Rm(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	admitted := api.Admission{Peer: testkit.PeerID(t, 1), By: testkit.PeerID(t, 2), Note: "volunteer"}
	if err := old.PutAdmission(ctx, admitted); err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, old)
	before := keysUnder(t, store, testNS+"/")

	ns1 := EpochNamespace(testNS, 1)
	cur := openAt(t, store, dir, ns1, nil, nil, nil)
	st, err := CopyLive(ctx, old, cur)
	if err != nil {
		t.Fatal(err)
	}
	if as, err := cur.Admissions(ctx); err != nil || len(as) != 1 || as[0].Peer != admitted.Peer || as[0].Note != "volunteer" || st.Admissions != 1 {
		t.Fatalf("admissions in the new epoch: %+v, %v (copied %d)", as, err, st.Admissions)
	}
	if st.Pins != 375 || st.Digest != want {
		t.Fatalf("copied %+v, want 375 pins and %+v", st, want)
	}
	if got := digestOf(t, cur); got != want {
		t.Fatalf("new epoch's digest %+v, old epoch's %+v", got, want)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := DropEpoch(ctx, store, testNS, "", ns1, JournalDir(dir, testNS)); err != nil {
		t.Fatal(err)
	}
	if n := keysUnder(t, store, testNS+"/"); n != 0 {
		t.Fatalf("%d keys of the old epoch left", n)
	}
	if err := cur.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	after := keysUnder(t, store, ns1+"/")
	t.Logf("keys: old epoch %d (500 pins written 9 times, 125 removed), new epoch %d (375 live pins)", before, after)
	if after*4 > before {
		t.Fatalf("the new epoch holds %d keys, the old %d: the history came along", after, before)
	}
	// A removal and an update of copied pins merge (go-ds-crdt reads the
	// copy's delta blocks to settle them).
	if err := cur.Rm(ctx, testkit.Cid(1)); err != nil {
		t.Fatal(err)
	}
	up := testPin(t, 2)
	up.Name = "renamed"
	if err := cur.Add(ctx, up); err != nil {
		t.Fatal(err)
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	cur = openAt(t, store, dir, ns1, nil, nil, nil)
	defer cur.Close()
	if _, err := cur.Get(ctx, testkit.Cid(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed pin after a restart: %v", err)
	}
	if p, err := cur.Get(ctx, testkit.Cid(2)); err != nil || p.Name != "renamed" || p.Version != 2 {
		t.Fatalf("updated pin after a restart: %+v, %v", p, err)
	}
	if d := digestOf(t, cur); d.Pins != 374 {
		t.Fatalf("%d pins after a restart, want 374", d.Pins)
	}
}

// Two replicas of a new epoch, one of which made the copy, converge, and
// concurrent removals and updates of copied pins on both sides merge to
// the same pinset.
func TestNewEpochReplicasConverge(t *testing.T) {
	ctx := context.Background()
	srcStore, srcDir := emptyBadger(t)
	defer srcStore.Close()
	old := openAt(t, srcStore, srcDir, testNS, nil, nil, nil)
	defer old.Close()
	churn(t, old, 400, 2)

	blocks := LocalDAG(dssync.MutexWrap(ds.NewMapDatastore()), "/blocks")
	h := &hub{}
	ns1 := EpochNamespace(testNS, 1)
	var rs []*State
	for range 2 {
		store, dir := emptyBadger(t)
		p := h.join()
		r := openAt(t, store, dir, ns1, blocks, p, nil)
		t.Cleanup(func() {
			close(p.done)
			r.Close()
			store.Close()
		})
		rs = append(rs, r)
	}
	if _, err := CopyLive(ctx, old, rs[0]); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, old)
	testkit.WaitFor(t, 30*time.Second, "the second replica to hold the copy", func() bool {
		return digestOf(t, rs[1]) == want
	})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for side, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := side * 50; i < side*50+100; i++ { // 50..99 on both sides
				if err := r.Rm(ctx, testkit.Cid(i)); err != nil {
					errs <- fmt.Errorf("replica %d: removing %d: %w", side, i, err)
					return
				}
			}
			for i := 200 + side*50; i < 300+side*50; i++ { // 250..299 on both
				p := testPin(t, i)
				p.Name = fmt.Sprint("side", side)
				if err := r.Add(ctx, p); err != nil {
					errs <- fmt.Errorf("replica %d: updating %d: %w", side, i, err)
					return
				}
			}
			if err := r.Flush(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "both replicas to agree", func() bool {
		return digestOf(t, rs[0]) == digestOf(t, rs[1])
	})
	for _, r := range rs {
		if d := digestOf(t, r); d.Pins != 250 {
			t.Fatalf("%d pins, want 400 less 150 removed", d.Pins)
		}
		for _, i := range []int{0, 149} {
			if _, err := r.Get(ctx, testkit.Cid(i)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("pin %d was removed: %v", i, err)
			}
		}
		if p, err := r.Get(ctx, testkit.Cid(220)); err != nil || p.Name != "side0" {
			t.Fatalf("pin 220, updated by replica 0 only: %+v, %v", p, err)
		}
		if p, err := r.Get(ctx, testkit.Cid(320)); err != nil || p.Name != "side1" {
			t.Fatalf("pin 320, updated by replica 1 only: %+v, %v", p, err)
		}
	}
}

// Late writes to the old epoch reach the new one unless it holds newer
// records; a late removal is carried when the new epoch's record is one
// the old epoch held — the copy, or a record carried over after the copy
// — and never when the new epoch wrote it.
func TestCarryOver(t *testing.T) {
	ctx := context.Background()
	store, dir := emptyBadger(t)
	defer store.Close()
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	old := openAt(t, store, dir, testNS, nil, nil, now)
	defer old.Close()
	for i := range 6 {
		if err := old.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cur := openAt(t, store, dir, EpochNamespace(testNS, 1), nil, nil, now)
	defer cur.Close()
	if _, err := CopyLive(ctx, old, cur); err != nil {
		t.Fatal(err)
	}
	named := func(i int, name string) *api.Pin {
		p := testPin(t, i)
		p.Name = name
		return p
	}
	do := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Pin 4 is removed from the old epoch, then written anew in the new
	// one (newer: it stays); the new epoch writes pins 3 and 7; then late
	// writes to the old epoch: pin 1 renamed, pin 3 renamed (newer than
	// the new epoch's, so it wins), pin 5 renamed, pin 9 added, pin 2
	// removed.
	do(old.Rm(ctx, testkit.Cid(4)))
	do(cur.Add(ctx, named(3, "new-epoch")))
	do(cur.Add(ctx, named(4, "new-epoch")))
	do(cur.Add(ctx, named(7, "new-epoch")))
	for _, p := range []*api.Pin{named(1, "late"), named(3, "late"), named(5, "late"), testPin(t, 9)} {
		do(old.Add(ctx, p))
	}
	do(old.Rm(ctx, testkit.Cid(2)))
	do(old.Flush(ctx))
	n, err := CarryOverAll(ctx, old, cur, Coverage{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(want map[int]string) {
		t.Helper()
		for i := range 10 {
			p, err := cur.Get(ctx, testkit.Cid(i))
			name, kept := want[i]
			switch {
			case !kept && !errors.Is(err, ErrNotFound):
				t.Errorf("pin %d: %+v, %v; want none", i, p, err)
			case kept && (err != nil || p.Name != name):
				t.Errorf("pin %d: %+v, %v; want named %q", i, p, err, name)
			}
		}
	}
	check(map[int]string{0: "p0", 1: "late", 3: "late", 4: "new-epoch", 5: "late", 7: "new-epoch", 9: "p9"})
	if n != 5 {
		t.Fatalf("carried %d records, want 5 (pins 1, 2, 3, 5, 9)", n)
	}
	// Carrying again changes nothing.
	if n, err := CarryOverAll(ctx, old, cur, Coverage{}); err != nil || n != 0 {
		t.Fatalf("a second carry-over changed %d (%v)", n, err)
	}
	// The old epoch then removes pin 5, whose late record was carried
	// over, and pin 0, copied: both go; pin 7, which it never held,
	// stays.
	do(old.Rm(ctx, testkit.Cid(5)))
	do(old.Rm(ctx, testkit.Cid(0)))
	do(old.Flush(ctx))
	if n, err := CarryOverAll(ctx, old, cur, Coverage{}); err != nil || n != 2 {
		t.Fatalf("carrying two late removals changed %d (%v)", n, err)
	}
	check(map[int]string{1: "late", 3: "late", 4: "new-epoch", 7: "new-epoch", 9: "p9"})
}

// With delta blocks kept apart from the pinset (as a peer keeps them, one
// blockstore for every epoch), dropping the old epoch removes its blocks
// and leaves the new epoch's.
func TestDropEpochLeavesTheNewerEpochsBlocks(t *testing.T) {
	ctx := context.Background()
	store, dir := emptyBadger(t)
	defer store.Close()
	const shared = "/pinring/test"
	blocks := LocalDAG(store, shared)
	open := func(ns string) *State {
		s, err := New(ctx, DefaultConfig(), Deps{Store: store, Namespace: ns, JournalDir: JournalDir(dir, ns),
			DAG: blocks, BlocksNamespace: shared})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := open(testNS)
	churn(t, old, 200, 3)
	ns1 := EpochNamespace(testNS, 1)
	cur := open(ns1)
	if _, err := CopyLive(ctx, old, cur); err != nil {
		t.Fatal(err)
	}
	if err := cur.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	oldBlocks, newBlocks := keysUnder(t, store, testNS+"/b/"), keysUnder(t, store, ns1+"/b/")
	if all := keysUnder(t, store, shared+"/blocks/"); all != oldBlocks+newBlocks || newBlocks == 0 {
		t.Fatalf("%d blocks, the epochs processed %d and %d", all, oldBlocks, newBlocks)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := DropEpoch(ctx, store, testNS, shared, ns1, JournalDir(dir, testNS)); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, store, shared+"/blocks/"); left != newBlocks {
		t.Fatalf("%d blocks left, the new epoch's are %d", left, newBlocks)
	}
	// Gone from the tables too: no tombstone or older version of a dropped
	// block is left for the value log to keep what it points to.
	if v := versionsUnder(t, store, shared+"/blocks/"); v != newBlocks {
		t.Fatalf("%d versions of blocks in the tables after the drop, for %d blocks", v, newBlocks)
	}
	if n := keysUnder(t, store, testNS+"/"); n != 0 {
		t.Fatalf("%d keys of the old epoch left", n)
	}
	// The new epoch still reads its blocks: removing a copied pin merges.
	if err := cur.Rm(ctx, testkit.Cid(3)); err != nil {
		t.Fatal(err)
	}
	if err := cur.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d := digestOf(t, cur); d.Pins != 199 {
		t.Fatalf("%d pins, want 199", d.Pins)
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
}

// Merged is true once every delta under the given heads is merged here,
// and not for heads another replica made that this one has not merged;
// History counts the elements and tombstones removals leave behind.
func TestMergedAndHistory(t *testing.T) {
	ctx := context.Background()
	blocks := LocalDAG(dssync.MutexWrap(ds.NewMapDatastore()), "/blocks")
	h := &hub{}
	var rs []*State
	for i := range 3 {
		store, dir := emptyBadger(t)
		var bc crdt.Broadcaster
		p := h.join()
		if i < 2 {
			bc = p // the third hears nothing
		}
		r := openAt(t, store, dir, testNS, blocks, bc, nil)
		t.Cleanup(func() {
			close(p.done)
			r.Close()
			store.Close()
		})
		rs = append(rs, r)
	}
	a, b, c := rs[0], rs[1], rs[2]
	for i := range 20 {
		if err := a.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	heads := a.Heads(ctx)
	if ok, err := a.Merged(ctx, heads); !ok || err != nil || len(heads) == 0 {
		t.Fatalf("the writer has not merged its own heads %v: %v %v", heads, ok, err)
	}
	testkit.WaitFor(t, 10*time.Second, "b merged a's heads", func() bool {
		ok, err := b.Merged(ctx, heads)
		return ok && err == nil
	})
	if ok, _ := c.Merged(ctx, heads); ok {
		t.Fatal("a replica that heard nothing says it merged a's heads")
	}
	for i := range 5 {
		if err := a.Rm(ctx, testkit.Cid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hist, err := a.History(ctx)
	if err != nil || hist.Live != 15 || hist.Elements != 20 || hist.Tombstones != 5 {
		t.Fatalf("history %+v (%v), want 15 live, 20 elements, 5 tombstones", hist, err)
	}
}

// A carry-over removal is decided on the carrier's view of the old epoch
// and packed later: it must not take a newer record that reached the
// pinset in between (the writer re-pinned after its unpin and carried the
// new record first), in its own pack or in the same one; and it still
// removes the record it was decided on.
func TestALateRemovalSparesANewerRecord(t *testing.T) {
	ctx := context.Background()
	for _, samePack := range []bool{false, true} {
		t.Run(fmt.Sprintf("same pack %v", samePack), func(t *testing.T) {
			dir := t.TempDir()
			s, done := openState(t, dir, nil)
			for i := range 2 {
				if err := s.Add(ctx, testPin(t, i+1)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var was []*api.Pin
			for i := range 2 {
				r, err := s.Get(ctx, testkit.Cid(i+1))
				if err != nil {
					t.Fatal(err)
				}
				was = append(was, r)
			}
			done()

			cfg := DefaultConfig()
			if samePack {
				cfg.BatchAge = config.Duration(time.Hour) // all in the pack Close makes
			}
			s, done = openStateCfg(t, dir, cfg, nil)
			newer := testPin(t, 1)
			newer.Name = "pinned again"
			if err := s.Add(ctx, newer); err != nil {
				t.Fatal(err)
			}
			if !samePack {
				if err := s.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range was {
				if err := s.submit(ctx, &op{cid: r.Cid, rmIf: r}); err != nil {
					t.Fatal(err)
				}
			}
			if !samePack {
				if err := s.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			done()

			s, done = openState(t, dir, nil)
			defer done()
			got, err := s.Get(ctx, testkit.Cid(1))
			if err != nil {
				t.Fatalf("the record written after the one the removal was decided on is gone: %v", err)
			}
			if got.Name != "pinned again" {
				t.Fatalf("pin 1 is %q, want the newer record", got.Name)
			}
			if _, err := s.Get(ctx, testkit.Cid(2)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("pin 2, still the record the removal named, was not removed: %v", err)
			}
		})
	}
}

// A conditional removal survives the journal as it was submitted.
func TestJournalKeepsAConditionalRemoval(t *testing.T) {
	p := testPin(t, 3)
	p.Version, p.Timestamp = 4, time.Unix(1700000000, 5).UTC()
	o, err := decodeJournal(encodeJournal(&op{cid: p.Cid, rmIf: p}))
	if err != nil {
		t.Fatal(err)
	}
	if o.pin != nil || o.rmIf == nil || !sameRecord(o.rmIf, p) || !o.cid.Equals(p.Cid.Cid) {
		t.Fatalf("decoded %+v, want a removal of %s if still version 4", o, p.Cid)
	}
}
