package crdtstate

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// quarantineAfter is how many times a batch fails to pack before its
// records are packed one by one to find the ones that fail alone.
const quarantineAfter = 3

// QuarantineFile is where quarantined records are kept, in the journal
// directory: one JSON object a line.
const QuarantineFile = "quarantine.jsonl"

// maxQuarantineShown bounds the quarantined records kept in memory for
// /health (the file keeps them all).
const maxQuarantineShown = 20

// Quarantined is a pinset change that was acknowledged but could not be
// stored in the CRDT, set aside so that the changes after it are.
type Quarantined struct {
	Seq   uint64    `json:"seq"`
	Key   string    `json:"key"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
	// Record is the encoded pin (absent for a removal).
	Record []byte `json:"record,omitempty"`
}

// isolate packs ops one at a time, in order. If at least one packs, the
// ones that do not are quarantined (written to QuarantineFile, dropped
// from the overlay, and the journal watermark moved past every op) and it
// returns true; if none packs, nothing changes and it returns false.
func (s *State) isolate(ops []*op) bool {
	var bad []*op
	var errs []error
	packed := false
	for _, o := range ops {
		if err := s.pack([]*op{o}); err != nil {
			bad, errs = append(bad, o), append(errs, err)
			continue
		}
		packed = true
	}
	if !packed {
		return false
	}
	if len(bad) == 0 {
		return true
	}
	s.quarantine(bad, errs)
	top := ops[len(ops)-1].seq
	if err := s.deps.Store.Put(context.Background(), s.watermarkKey(), binary.BigEndian.AppendUint64(nil, top)); err != nil {
		logger.Errorf("moving the journal watermark past quarantined changes: %s", err)
	}
	return true
}

// maxKeyBytes and maxRecordBytes bound what pack puts in the CRDT: go-ds-
// crdt stores a key several times over inside longer keys, and Badger
// refuses keys over 65,000 bytes; a failed delta then stays in go-ds-crdt's
// batch and fails every later one. The API refuses such records first
// (api.Pin.Validate); this is the last line.
const (
	maxKeyBytes    = 4 << 10
	maxRecordBytes = 1 << 20
)

// packable says why o cannot be packed, if its key says so (pack checks
// the record's size as it encodes it).
func packable(o *op) error {
	if len(o.key()) > maxKeyBytes {
		return fmt.Errorf("its key is %d bytes, at most %d", len(o.key()), maxKeyBytes)
	}
	return nil
}

// quarantine sets bad aside (errs[i] is why bad[i] failed): appended to
// QuarantineFile, dropped from the overlay, counted for /health. The
// caller moves the journal watermark past them.
func (s *State) quarantine(bad []*op, errs []error) {
	if len(bad) == 0 {
		return
	}
	now := s.deps.Now().UTC()
	var lines []byte
	var recs []Quarantined
	for i, o := range bad {
		o.setAside = true
		q := Quarantined{Seq: o.seq, Key: o.key(), Error: errs[i].Error(), At: now}
		if o.pin != nil {
			q.Record = EncodePin(o.pin)
		}
		b, _ := json.Marshal(q)
		lines = append(append(lines, b...), '\n')
		q.Record = nil
		if len(q.Key) > 200 {
			q.Key = q.Key[:200] + "…"
		}
		recs = append(recs, q)
		logger.Errorf("pinset change %d (%.200s) could not be stored and is quarantined in %s: %s", o.seq, o.key(), s.quarantinePath(), errs[i])
	}
	if err := appendSynced(s.quarantinePath(), lines); err != nil {
		logger.Errorf("writing the quarantine file %s: %s", s.quarantinePath(), err)
	}
	s.ovMu.Lock()
	for _, o := range bad {
		if e, ok := s.overlay[o.key()]; ok && e.seq <= o.seq {
			delete(s.overlay, o.key())
		}
	}
	s.ovMu.Unlock()
	s.qMu.Lock()
	s.quarantined += len(recs)
	s.qLast = append(s.qLast, recs...)
	if len(s.qLast) > maxQuarantineShown {
		s.qLast = s.qLast[len(s.qLast)-maxQuarantineShown:]
	}
	s.qMu.Unlock()
}

func (s *State) quarantinePath() string { return filepath.Join(s.deps.JournalDir, QuarantineFile) }

// Quarantine reports how many changes were quarantined since the state
// opened, the latest few, and the file that holds them all.
func (s *State) Quarantine() (n int, latest []Quarantined, file string) {
	s.qMu.Lock()
	defer s.qMu.Unlock()
	return s.quarantined, append([]Quarantined(nil), s.qLast...), s.quarantinePath()
}

func appendSynced(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("appending: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
