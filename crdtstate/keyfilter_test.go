package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dstest "github.com/ipfs/go-datastore/test"

	"github.com/pinring/pinring/internal/testkit"
)

// settled waits until f answers lookups and no bigger filter is being
// filled.
func settled(t testing.TB, f *keyFilter) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, "the key filter to be filled", func() bool { return f.ready() && !f.growing.Load() })
}

// countingStore counts the lookups that reach the datastore.
type countingStore struct {
	ds.Batching
	gets, hases atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	c.gets.Add(1)
	return c.Batching.Get(ctx, k)
}

func (c *countingStore) Has(ctx context.Context, k ds.Key) (bool, error) {
	c.hases.Add(1)
	return c.Batching.Has(ctx, k)
}

func TestKeyFilterConformance(t *testing.T) {
	// Prefix "/": every key the suites use goes through the filter.
	t.Run("map", func(t *testing.T) {
		f := newKeyFilter(context.Background(), dssync.MutexWrap(ds.NewMapDatastore()), "/", "")
		defer f.stop()
		settled(t, f)
		dstest.SubtestAll(t, f)
		dstest.RunBatchTest(t, f)
		dstest.RunBatchDeleteTest(t, f)
		dstest.RunBatchPutAndDeleteTest(t, f)
	})
	t.Run("badger", func(t *testing.T) {
		store, err := OpenBadger(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		f := newKeyFilter(context.Background(), store, "/", "")
		defer f.stop()
		settled(t, f)
		dstest.SubtestAll(t, f)
		dstest.RunBatchTest(t, f)
		dstest.RunBatchPutAndDeleteTest(t, f)
	})
}

func TestKeyFilterAnswersAbsentKeys(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	for _, k := range []string{"/ns/s/a", "/ns/s/b", "/ns/s/s/elem", "/other/x"} {
		if err := base.Put(ctx, ds.NewKey(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Batching: base}
	f := newKeyFilter(ctx, cs, "/ns/s/", "/ns/s/s/")
	defer f.stop()
	settled(t, f)

	// Keys there before the filter are found (listed when it was filled).
	for _, k := range []string{"/ns/s/a", "/ns/s/b"} {
		v, err := f.Get(ctx, ds.NewKey(k))
		if err != nil || string(v) != k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	gets, hases := cs.gets.Load(), cs.hases.Load()
	for i := range 100 {
		k := ds.NewKey(fmt.Sprintf("/ns/s/absent-%d", i))
		if _, err := f.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("Get(%s): %v, want ErrNotFound", k, err)
		}
		if has, err := f.Has(ctx, k); err != nil || has {
			t.Fatalf("Has(%s) = %t, %v", k, has, err)
		}
		if _, err := f.GetSize(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("GetSize(%s): %v, want ErrNotFound", k, err)
		}
	}
	// Under 0.5 % false positives: a few lookups may reach the store.
	if g, h := cs.gets.Load()-gets, cs.hases.Load()-hases; g+h > 5 {
		t.Errorf("%d Gets and %d Has of 100 absent keys each reached the datastore", g, h)
	}
	if f.answered.Load() < 250 {
		t.Errorf("the filter answered %d of 300 lookups", f.answered.Load())
	}
	// Outside the prefix, and under the one skipped, every lookup goes to
	// the store.
	for _, k := range []string{"/other/absent", "/ns/s/s/absent"} {
		gets = cs.gets.Load()
		if _, err := f.Get(ctx, ds.NewKey(k)); !errors.Is(err, ds.ErrNotFound) {
			t.Fatal(err)
		}
		if cs.gets.Load() != gets+1 {
			t.Errorf("Get(%s) did not reach the datastore", k)
		}
	}
	if v, err := f.Get(ctx, ds.NewKey("/ns/s/s/elem")); err != nil || string(v) != "/ns/s/s/elem" {
		t.Fatalf("Get(/ns/s/s/elem) = %q, %v", v, err)
	}
	if g := f.cur.Load(); g.keys.Load() != 2 {
		t.Errorf("the filter holds %d keys, want the 2 under /ns/s/ and not /ns/s/s/", g.keys.Load())
	}

	// Keys written through the filter, alone or in a batch, are found.
	if err := f.Put(ctx, ds.NewKey("/ns/s/put"), []byte("p")); err != nil {
		t.Fatal(err)
	}
	b, err := f.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, ds.NewKey("/ns/s/batched"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/ns/s/put", "/ns/s/batched"} {
		if has, err := f.Has(ctx, ds.NewKey(k)); err != nil || !has {
			t.Errorf("Has(%s) = %t, %v after writing it", k, has, err)
		}
	}
	// A deleted key is absent, from the store.
	if err := f.Delete(ctx, ds.NewKey("/ns/s/a")); err != nil {
		t.Fatal(err)
	}
	if has, _ := f.Has(ctx, ds.NewKey("/ns/s/a")); has {
		t.Error("a deleted key is still there")
	}
}

// blockedSnapshot lists the keys a map store held when it was taken, once
// release is closed.
func blockedSnapshot(store ds.Datastore, release <-chan struct{}) func(context.Context, string) (keySnapshot, error) {
	inner := snapshotKeys(store)
	return func(ctx context.Context, prefix string) (keySnapshot, error) {
		snap, err := inner(ctx, prefix)
		if err != nil {
			return snap, err
		}
		return keySnapshot{
			walk: func(fn func([]byte) error) error {
				<-release
				return snap.walk(fn)
			},
			close: snap.close,
		}, nil
	}
}

func TestKeyFilterWritesWhileFilling(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	if err := base.Put(ctx, ds.NewKey("/s/before"), nil); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	f := startKeyFilter(ctx, base, "/s/", "", initialFilterKeys, blockedSnapshot(base, release))
	defer f.stop()
	testkit.WaitFor(t, 10*time.Second, "the snapshot to be taken", func() bool {
		f.mu.RLock()
		defer f.mu.RUnlock()
		return f.next != nil
	})
	// While the filter fills, lookups go to the store...
	if has, err := f.Has(ctx, ds.NewKey("/s/before")); err != nil || !has {
		t.Fatalf("Has(/s/before) = %t, %v while filling", has, err)
	}
	// ...and keys written after the snapshot was taken go in the filter.
	if err := f.Put(ctx, ds.NewKey("/s/during"), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := f.Batch(ctx)
	if err := b.Put(ctx, ds.NewKey("/s/during-batch"), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if f.ready() {
		t.Fatal("the filter answers before it is filled")
	}
	close(release)
	settled(t, f)
	for _, k := range []string{"/s/before", "/s/during", "/s/during-batch"} {
		if has, err := f.Has(ctx, ds.NewKey(k)); err != nil || !has {
			t.Errorf("Has(%s) = %t, %v once filled", k, has, err)
		}
	}
}

// A batch that puts a key before a bigger filter begins and commits it
// after: the key is not in the new filter's snapshot, so the commit must
// add it there.
func TestKeyFilterBatchAcrossGrowth(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	f := startKeyFilter(ctx, base, "/s/", "", 4, snapshotKeys(base))
	defer f.stop()
	settled(t, f)
	first := f.cur.Load()
	b, _ := f.Batch(ctx)
	if err := b.Put(ctx, ds.NewKey("/s/late"), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := f.Put(ctx, ds.NewKey(fmt.Sprint("/s/k", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "a bigger filter", func() bool { return f.cur.Load() != first && !f.growing.Load() })
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if has, err := f.Has(ctx, ds.NewKey("/s/late")); err != nil || !has {
		t.Fatalf("Has(/s/late) = %t, %v: a batch committed after the filter grew is lost", has, err)
	}
	if g := f.cur.Load(); g.limit < 10 {
		t.Errorf("the new filter is sized for %d keys", g.limit)
	}
}

func TestKeyFilterGrowsUnderConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	f := startKeyFilter(ctx, base, "/s/", "", 16, snapshotKeys(base))
	defer f.stop()
	const writers, each = 4, 1500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i += 3 {
				if err := f.Put(ctx, ds.NewKey(fmt.Sprintf("/s/%d/%d", w, i)), nil); err != nil {
					t.Error(err)
					return
				}
				b, _ := f.Batch(ctx)
				for j := 1; j < 3; j++ {
					if err := b.Put(ctx, ds.NewKey(fmt.Sprintf("/s/%d/%d", w, i+j)), nil); err != nil {
						t.Error(err)
						return
					}
				}
				if err := b.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				// Every key written so far is there, whatever the filter is doing.
				k := ds.NewKey(fmt.Sprintf("/s/%d/%d", w, i/2))
				if has, err := f.Has(ctx, k); err != nil || !has {
					t.Errorf("Has(%s) = %t, %v", k, has, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	settled(t, f)
	missing := 0
	for w := range writers {
		for i := range each {
			if has, _ := f.Has(ctx, ds.NewKey(fmt.Sprintf("/s/%d/%d", w, i))); !has {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d keys written are reported absent", missing, writers*each)
	}
	if g := f.cur.Load(); g.limit < writers*each {
		t.Errorf("the filter is sized for %d keys, %d written", g.limit, writers*each)
	}
}

// The pinset's own lookups of pins it never held are answered by the
// filter, and pins from before a restart are found after it.
func TestStateKeyFilter(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, done := openState(t, dir, nil)
	for i := range 50 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	done()

	s, done = openState(t, dir, nil)
	defer done()
	settled(t, s.keys)
	before := s.keys.answered.Load()
	for i := range 50 {
		p, err := s.Get(ctx, testkit.Cid(i))
		if err != nil || p.Version != 1 {
			t.Fatalf("pin %d after a restart: %+v, %v", i, p, err)
		}
	}
	for i := 50; i < 100; i++ {
		if _, err := s.Get(ctx, testkit.Cid(i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pin %d never added: %v", i, err)
		}
	}
	if n := s.keys.answered.Load() - before; n < 45 {
		t.Errorf("the filter answered %d of 50 lookups of absent pins", n)
	}
	// Pinning again continues the versions.
	p := testPin(t, 3)
	if err := s.Add(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, p.Cid); err != nil || got.Version != 2 {
		t.Fatalf("pin 3 pinned again: %+v, %v", got, err)
	}
}
