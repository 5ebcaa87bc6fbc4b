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
// (ADR 0004). The writer appends each accepted change under
// <namespace>/journal/<seq> and fsyncs once per group; the packer later
// commits many journaled changes as one delta, then records the highest
// packed sequence number under <namespace>/journal-packed and deletes the
// packed entries. Every key lives in the same Badger database as the CRDT,
// whose log is replayed in order after a crash, so a durable watermark
// implies a durable delta. On open, entries above the watermark are packed
// again; packing a change twice only repeats a write of the same record.
//
// Until a change is packed it lives in the overlay, which Get, Has and
// listings consult before the CRDT.

const (
	journalOpPut byte = 'p'
	journalOpRm  byte = 'r'
)

type overlayEntry struct {
	pin *api.Pin // nil: removed
	seq uint64
}

func (s *State) journalKey(seq uint64) ds.Key {
	return ds.RawKey(fmt.Sprintf("%s/journal/%016x", s.deps.Namespace, seq))
}

func (s *State) watermarkKey() ds.Key {
	return ds.RawKey(s.deps.Namespace + "/journal-packed")
}

func encodeJournal(o *op) []byte {
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
	case journalOpRm:
		c, err := cid.Cast(b[1:])
		if err != nil {
			return nil, fmt.Errorf("journal removal: %w", err)
		}
		return &op{cid: api.NewCid(c)}, nil
	}
	return nil, fmt.Errorf("journal entry of unknown kind %q", b[0])
}

// replayJournal loads the changes that were acknowledged but not packed
// before the last shutdown, in sequence order.
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
	s.seq = mark
	prefix := s.deps.Namespace + "/journal/"
	res, err := s.deps.Store.Query(ctx, query.Query{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var ops []*op
	var stale []ds.Key
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		var seq uint64
		if _, err := fmt.Sscanf(strings.TrimPrefix(r.Key, prefix), "%x", &seq); err != nil {
			return nil, fmt.Errorf("journal key %s: %w", r.Key, err)
		}
		if seq <= mark {
			stale = append(stale, ds.RawKey(r.Key)) // packed; its deletion was lost
			continue
		}
		o, err := decodeJournal(r.Value)
		if err != nil {
			return nil, fmt.Errorf("journal entry %d: %w", seq, err)
		}
		o.seq = seq
		ops = append(ops, o)
	}
	slices.SortFunc(ops, func(a, b *op) int { return cmp.Compare(a.seq, b.seq) })
	for _, o := range ops {
		s.overlay[pinKey(o.cid).String()] = overlayEntry{pin: o.pin, seq: o.seq}
		s.seq = max(s.seq, o.seq)
	}
	for _, k := range stale {
		if err := s.deps.Store.Delete(ctx, k); err != nil {
			return nil, err
		}
	}
	if len(ops) > 0 {
		logger.Infof("replaying %d journaled pinset changes", len(ops))
	}
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
