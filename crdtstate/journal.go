package crdtstate

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/pinring/pinring/api"
)

// The journal makes a write durable before it is packed into a CRDT delta
// (ADR 0004). The writer hands each accepted change to the journal
// (journalfile.go) and the syncer writes and fsyncs everything waiting at
// once; the packer
// later commits many journaled changes as one delta, then records the
// highest packed sequence number under <namespace>/journal-packed in
// Badger, after the delta's writes in the same log, so a durable watermark
// implies a durable delta. Segments wholly below the watermark are deleted
// once it is synced. On open, entries above the watermark are packed
// again; packing a change twice only repeats a write of the same record.
//
// Earlier versions kept the journal in Badger under <namespace>/journal/;
// such entries are moved to the files when the state opens.
//
// Until a change is packed it lives in the overlay, which Get, Has and
// listings consult before the CRDT.

const (
	journalOpPut  byte = 'p'
	journalOpRm   byte = 'r'
	journalOpRmIf byte = 'R' // a removal if the record is still the one given
)

type overlayEntry struct {
	pin *api.Pin // nil: removed
	seq uint64
}

// journalKey is where earlier versions journaled change seq in Badger.
func (s *State) journalKey(seq uint64) ds.Key {
	return ds.RawKey(fmt.Sprintf("%s/journal/%016x", s.deps.Namespace, seq))
}

func (s *State) watermarkKey() ds.Key {
	return ds.RawKey(s.deps.Namespace + "/journal-packed")
}

func encodeJournal(o *op) []byte {
	if o.rmIf != nil {
		return append([]byte{journalOpRmIf}, EncodePin(o.rmIf)...)
	}
	if o.pin == nil {
		return append([]byte{journalOpRm}, o.cid.Bytes()...)
	}
	return append([]byte{journalOpPut}, EncodePin(o.pin)...)
}

func decodeJournal(b []byte) (*op, error) {
	if len(b) < 2 {
		return nil, errors.New("journal entry too short")
	}
	switch b[0] {
	case journalOpPut:
		p, err := DecodePin(b[1:])
		if err != nil {
			return nil, err
		}
		return &op{pin: p, cid: p.Cid}, nil
	case journalOpRmIf:
		p, err := DecodePin(b[1:])
		if err != nil {
			return nil, err
		}
		return &op{cid: p.Cid, rmIf: p}, nil
	case journalOpRm:
		c, err := cid.Cast(b[1:])
		if err != nil {
			return nil, fmt.Errorf("journal removal: %w", err)
		}
		return &op{cid: api.NewCid(c)}, nil
	}
	return nil, fmt.Errorf("journal entry of unknown kind %q", b[0])
}

// replayJournal opens the journal files and loads the changes that were
// acknowledged but not packed before the last shutdown, in sequence order.
func (s *State) replayJournal(ctx context.Context) ([]*op, error) {
	var mark uint64
	v, err := s.deps.Store.Get(ctx, s.watermarkKey())
	switch {
	case errors.Is(err, ds.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the journal watermark: %w", err)
	case len(v) != 8:
		return nil, fmt.Errorf("journal watermark of %d bytes, want 8", len(v))
	default:
		mark = binary.BigEndian.Uint64(v)
	}
	jf, ops, err := openJournalFile(s.deps.JournalDir, mark)
	if err != nil {
		return nil, err
	}
	s.jf = jf
	// A crash between moving Badger's entries and deleting them leaves
	// both copies.
	seen := make(map[uint64]bool, len(ops))
	for _, o := range ops {
		seen[o.seq] = true
	}
	legacy, err := s.moveBadgerJournal(ctx, mark, seen)
	if err != nil {
		jf.close()
		return nil, err
	}
	if len(legacy) > 0 {
		ops = append(ops, legacy...)
		slices.SortFunc(ops, func(a, b *op) int { return cmp.Compare(a.seq, b.seq) })
	}
	s.seq = mark
	for _, o := range ops {
		if o.rmIf == nil {
			s.overlay[o.key()] = overlayEntry{pin: o.pin, seq: o.seq}
		} else {
			s.conds[o.key()] = o.seq
		}
		s.seq = max(s.seq, o.seq)
	}
	if len(ops) > 0 {
		logger.Infof("replaying %d journaled pinset changes", len(ops))
	}
	return ops, nil
}

// moveBadgerJournal moves the entries an earlier version journaled in
// Badger above mark, and not in the files already (inFiles), into the
// journal files (synced), then deletes every Badger journal entry.
func (s *State) moveBadgerJournal(ctx context.Context, mark uint64, inFiles map[uint64]bool) ([]*op, error) {
	prefix := s.deps.Namespace + "/journal/"
	res, err := s.deps.Store.Query(ctx, query.Query{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var ops []*op
	var keys []ds.Key
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		var seq uint64
		if _, err := fmt.Sscanf(strings.TrimPrefix(r.Key, prefix), "%x", &seq); err != nil {
			return nil, fmt.Errorf("journal key %s: %w", r.Key, err)
		}
		keys = append(keys, ds.RawKey(r.Key))
		if seq <= mark || inFiles[seq] {
			continue // packed (its deletion was lost), or moved already
		}
		o, err := decodeJournal(r.Value)
		if err != nil {
			return nil, fmt.Errorf("journal entry %d: %w", seq, err)
		}
		o.seq = seq
		ops = append(ops, o)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.SortFunc(ops, func(a, b *op) int { return cmp.Compare(a.seq, b.seq) })
	if len(ops) > 0 {
		var buf []byte
		for _, o := range ops {
			buf = appendJournalRecord(buf, o)
		}
		if err := s.jf.append(buf, ops[0].seq, ops[len(ops)-1].seq); err != nil {
			return nil, err
		}
		if err := s.jf.sync(); err != nil {
			return nil, err
		}
	}
	b, err := s.deps.Store.Batch(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			return nil, err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return nil, err
	}
	logger.Infof("moved %d journaled pinset changes from the datastore to %s", len(ops), s.deps.JournalDir)
	return ops, nil
}

// lookup returns the current record for key: the overlay's if it has one,
// else the CRDT's. nil, ErrNotFound when absent.
func (s *State) lookup(ctx context.Context, key ds.Key) (*api.Pin, error) {
	s.ovMu.RLock()
	e, ok := s.overlay[key.String()]
	s.ovMu.RUnlock()
	if ok {
		if e.pin == nil {
			return nil, ErrNotFound
		}
		return e.pin, nil
	}
	return s.get(ctx, key)
}

// overlaySnapshot returns the unpacked changes sorted by key.
func (s *State) overlaySnapshot() (map[string]*api.Pin, []string) {
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	if len(s.overlay) == 0 {
		return nil, nil
	}
	m := make(map[string]*api.Pin, len(s.overlay))
	keys := make([]string, 0, len(s.overlay))
	for k, e := range s.overlay {
		m[k] = e.pin
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m, keys
}

// withOverlay wraps fn, a callback over the CRDT's records in key order, so
// that it sees the unpacked changes instead: records the overlay replaces
// or removes are skipped, and the overlay's records are passed in key
// order among the others. flush passes the overlay records after the last
// CRDT record.
func withOverlay(ov map[string]*api.Pin, keys []string, fn func(string, []byte) error) (wrapped func(string, []byte) error, flush func() error) {
	i := 0
	emitUpTo := func(k string, all bool) error {
		for ; i < len(keys) && (all || keys[i] < k); i++ {
			if p := ov[keys[i]]; p != nil {
				if err := fn(keys[i], EncodePin(p)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	wrapped = func(k string, v []byte) error {
		if err := emitUpTo(k, false); err != nil {
			return err
		}
		if _, replaced := ov[k]; replaced {
			return nil
		}
		return fn(k, v)
	}
	return wrapped, func() error { return emitUpTo("", true) }
}
