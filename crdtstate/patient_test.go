package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v2"
	ds "github.com/ipfs/go-datastore"
)

// While Badger drops prefixes (writes blocked), a plain write fails and a
// write through Patient waits and lands: single writes and batches alike.
func TestPatientWritesWaitOutADrop(t *testing.T) {
	ctx := context.Background()
	store, _ := emptyBadger(t)
	defer store.Close()
	p := Patient(store)
	var (
		done    atomic.Bool
		refused atomic.Int64
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for !done.Load() {
			if err := store.DB.DropPrefix([]byte("/nothing-here/")); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Millisecond) // writes open a while, as between drops
		}
	})
	wg.Go(func() { // the control: plain writes, some refused
		for i := 0; !done.Load(); i++ {
			err := store.Put(ctx, ds.NewKey(fmt.Sprint("/plain/", i)), []byte("v"))
			if errors.Is(err, badgerdb.ErrBlockedWrites) {
				refused.Add(1)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	const n = 200
	for i := range n {
		k := ds.NewKey(fmt.Sprint("/patient/", i))
		if i%2 == 0 {
			if err := p.Put(ctx, k, []byte("v")); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			continue
		}
		b, err := p.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := b.Put(ctx, k.ChildString(fmt.Sprint(j)), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Delete(ctx, k.ChildString("1")); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	done.Store(true)
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("no plain write was refused: the drops never overlapped the writes, the test proved nothing")
	}
	t.Logf("%d plain writes refused meanwhile", refused.Load())
	for i := range n {
		k := ds.NewKey(fmt.Sprint("/patient/", i))
		want := map[ds.Key]bool{k: true}
		if i%2 == 1 {
			want = map[ds.Key]bool{k.ChildString("0"): true, k.ChildString("1"): false, k.ChildString("2"): true}
		}
		for key, there := range want {
			if has, err := store.Has(ctx, key); err != nil || has != there {
				t.Fatalf("%s: present %v (%v), want %v", key, has, err, there)
			}
		}
	}
}
