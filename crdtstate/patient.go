package crdtstate

import (
	"context"
	"errors"
	"time"

	badgerdb "github.com/dgraph-io/badger/v2"
	ds "github.com/ipfs/go-datastore"
	badger "github.com/ipfs/go-ds-badger2"
)

// Patient is the peer's store as the pinsets and the blockstore write to
// it: a write Badger refuses because writes are blocked — as they are
// while DropEpoch drops an old epoch's prefix — waits and is tried again,
// instead of failing. A failed write in the middle of a merge would leave
// go-ds-crdt with a processed head above a delta it never merged (and its
// dirty bit, a write too, unset). Any other store is returned as it is.
func Patient(s ds.Batching) ds.Batching {
	if b, ok := s.(*badger.Datastore); ok {
		return &patient{Datastore: b}
	}
	return s
}

type patient struct{ *badger.Datastore }

// maxBlockedWait bounds how long a write waits for writes to open again.
const maxBlockedWait = 10 * time.Minute

// whenOpen runs f until it is not refused for blocked writes.
func whenOpen(ctx context.Context, f func() error) error {
	wait, waited := 5*time.Millisecond, time.Duration(0)
	for {
		err := f()
		if !errors.Is(err, badgerdb.ErrBlockedWrites) || waited >= maxBlockedWait {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		waited += wait
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func (p *patient) Put(ctx context.Context, k ds.Key, v []byte) error {
	return whenOpen(ctx, func() error { return p.Datastore.Put(ctx, k, v) })
}

func (p *patient) Delete(ctx context.Context, k ds.Key) error {
	return whenOpen(ctx, func() error { return p.Datastore.Delete(ctx, k) })
}

// Batch gathers the batch's writes and applies them at Commit, all again
// if Badger refused them part way.
func (p *patient) Batch(context.Context) (ds.Batch, error) {
	return &patientBatch{p: p}, nil
}

type patientBatch struct {
	p   *patient
	ops []batchOp
}

type batchOp struct {
	k   ds.Key
	v   []byte
	del bool
}

func (b *patientBatch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.ops = append(b.ops, batchOp{k: k, v: append([]byte(nil), v...)})
	return nil
}

func (b *patientBatch) Delete(_ context.Context, k ds.Key) error {
	b.ops = append(b.ops, batchOp{k: k, del: true})
	return nil
}

// Commit applies the batch's writes. An empty batch writes nothing and
// opens no Badger batch: Badger v2's WriteBatch.Flush of a batch with no
// writes never ends the read its transaction began (Txn.CommitWith
// returns early without discarding it), and one such read pins the
// oldest version compactions may drop for as long as the store is open,
// so every overwritten value, deleted key and tombstone after it stays
// on disk. go-ds-crdt commits empty batches (its format migration, when
// there is nothing to migrate, at every pinset open).
func (b *patientBatch) Commit(ctx context.Context) error {
	if len(b.ops) == 0 {
		return nil
	}
	return whenOpen(ctx, func() error {
		real, err := b.p.Datastore.Batch(ctx)
		if err != nil {
			return err
		}
		for _, o := range b.ops {
			if o.del {
				err = real.Delete(ctx, o.k)
			} else {
				err = real.Put(ctx, o.k, o.v)
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			return real.Commit(ctx)
		}
		if c, ok := real.(interface{ Cancel() error }); ok {
			c.Cancel()
		}
		return err
	})
}
