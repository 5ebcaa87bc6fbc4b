package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// journalOps makes removal ops seq first..last (records of known size).
func journalOps(t *testing.T, first, last int) []*op {
	var ops []*op
	for i := first; i <= last; i++ {
		ops = append(ops, &op{cid: testkit.Cid(i), seq: uint64(i)})
	}
	return ops
}

func appendOps(t *testing.T, j *journalFile, ops []*op) {
	t.Helper()
	var buf []byte
	for _, o := range ops {
		buf = appendJournalRecord(buf, o)
	}
	if err := j.append(buf, ops[0].seq, ops[len(ops)-1].seq); err != nil {
		t.Fatal(err)
	}
	if err := j.sync(); err != nil {
		t.Fatal(err)
	}
}

func seqs(ops []*op) []uint64 {
	var out []uint64
	for _, o := range ops {
		out = append(out, o.seq)
	}
	return out
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+journalSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// Records come back in order, above the watermark only; segments rotate
// at their size limit; a segment is deleted only after the watermark that
// covers it is synced, and never when that sync fails.
func TestJournalFileSegments(t *testing.T) {
	dir := t.TempDir()
	j, ops, err := openJournalFile(dir, 0)
	if err != nil || len(ops) != 0 {
		t.Fatalf("empty journal: %v %v", ops, err)
	}
	j.segmentMax = 200 // a few records each
	for i := 1; i <= 30; i += 3 {
		appendOps(t, j, journalOps(t, i, i+2))
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, dir)); n < 3 {
		t.Fatalf("%d segments after 30 records of ~50 bytes with a 200-byte limit", n)
	}
	j, ops, err = openJournalFile(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(ops), seqs(journalOps(t, 11, 30)); !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	if !ops[0].cid.Equals(testkit.Cid(11).Cid) || ops[0].pin != nil {
		t.Fatalf("record 11 came back as %+v", ops[0])
	}
	for _, s := range j.closed {
		if s.last <= 10 {
			t.Fatalf("segment %s holds nothing above the watermark but was kept", s.path)
		}
	}
	before := segments(t, dir)
	failed := errors.New("disk gone")
	if err := j.release(20, func() error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("release with a failing sync: %v", err)
	}
	if after := segments(t, dir); !slices.Equal(before, after) {
		t.Fatalf("segments deleted though the watermark was not synced: %v → %v", before, after)
	}
	synced := false
	if err := j.release(20, func() error { synced = true; return nil }); err != nil || !synced {
		t.Fatalf("release: %v, synced %v", err, synced)
	}
	if after := segments(t, dir); len(after) >= len(before) {
		t.Fatalf("no segment deleted at watermark 20: %v → %v", before, after)
	}
	j.close()
	_, ops, err = openJournalFile(dir, 20)
	if got, want := seqs(ops), seqs(journalOps(t, 21, 30)); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after release, replayed %v (%v), want %v", got, err, want)
	}
}

// A crash can leave the last group half written: the journal keeps every
// whole record before it and cuts the file there, so that later appends
// are read back too. A segment is created full of zeros, which end its
// records.
func TestJournalFileTornTail(t *testing.T) {
	for name, damage := range map[string]func(b []byte, end int){
		"cut short":     func(b []byte, end int) { clear(b[end-5 : end]) },
		"bad checksum":  func(b []byte, end int) { b[end-3] ^= 0xff },
		"garbage after": func(b []byte, end int) { copy(b[end:], "garbage") },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j, _, err := openJournalFile(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			appendOps(t, j, journalOps(t, 1, 5))
			appendOps(t, j, journalOps(t, 6, 6))
			end := int(j.size)
			j.close()
			path := filepath.Join(dir, segments(t, dir)[0])
			b, _ := os.ReadFile(path)
			if len(b) != journalSegmentMax {
				t.Fatalf("segment of %d bytes, want %d (created full of zeros)", len(b), journalSegmentMax)
			}
			damage(b, end)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			want := seqs(journalOps(t, 1, 5))
			if name == "garbage after" {
				want = seqs(journalOps(t, 1, 6))
			}
			j, ops, err := openJournalFile(dir, 0)
			if err != nil || !slices.Equal(seqs(ops), want) {
				t.Fatalf("replayed %v (%v), want %v", seqs(ops), err, want)
			}
			appendOps(t, j, journalOps(t, 7, 8))
			j.close()
			if _, ops, _ = openJournalFile(dir, 0); !slices.Equal(seqs(ops), append(want, 7, 8)) {
				t.Fatalf("after appending past the cut: %v", seqs(ops))
			}
		})
	}
}

// What a crash between acknowledging and packing leaves in the journal
// files is packed when the state opens again, and new writes continue the
// sequence.
func TestJournalFileReplayIntoState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, done := openState(t, dir, nil)
	if err := s.Add(ctx, testPin(t, 1)); err != nil {
		t.Fatal(err)
	}
	top := s.seq
	done()

	j, _, err := openJournalFile(JournalDir(dir, "/pinring/test/state"), top)
	if err != nil {
		t.Fatal(err)
	}
	p2 := testPin(t, 2)
	p2.Version = 1
	var buf []byte
	for _, o := range []*op{{pin: p2, cid: p2.Cid, seq: top + 1}, {cid: testkit.Cid(1), seq: top + 2}} {
		buf = appendJournalRecord(buf, o)
	}
	if err := j.append(buf, top+1, top+2); err != nil {
		t.Fatal(err)
	}
	j.close()

	cfg := DefaultConfig()
	cfg.BatchAge = config.Duration(time.Millisecond)
	s, done = openStateCfg(t, dir, cfg, nil)
	defer done()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, testkit.Cid(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin 1, removed in the journal: %v", err)
	}
	if p, err := s.Get(ctx, testkit.Cid(2)); err != nil || p.Name != "p2" {
		t.Fatalf("pin 2, added in the journal: %+v %v", p, err)
	}
	if err := s.Add(ctx, testPin(t, 3)); err != nil || s.seq != top+3 {
		t.Fatalf("next write: %v, sequence %d, want %d", err, s.seq, top+3)
	}
}

// A write or fsync that fails stops the journal: what was synced before
// stays, and nothing is taken after (a later fsync could succeed over
// pages the kernel dropped, leaving a gap that ends the segment at replay).
func TestJournalFileStopsAtAFailure(t *testing.T) {
	dir := t.TempDir()
	j, _, err := openJournalFile(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendOps(t, j, journalOps(t, 1, 3))
	j.cur.Close() // the next write fails
	var buf []byte
	for _, o := range journalOps(t, 4, 4) {
		buf = appendJournalRecord(buf, o)
	}
	if err := j.append(buf, 4, 4); err != nil {
		t.Fatalf("append before the failure shows: %v", err)
	}
	err = j.sync()
	if err == nil {
		t.Fatal("sync over a closed segment succeeded")
	}
	if err2 := j.append(buf, 5, 5); !errors.Is(err2, os.ErrClosed) {
		t.Fatalf("append after a failed sync: %v, want the sync's error", err2)
	}
	if err2 := j.sync(); !errors.Is(err2, os.ErrClosed) {
		t.Fatalf("sync after a failed sync: %v, want the sync's error", err2)
	}
	_, ops, err := openJournalFile(dir, 0)
	if err != nil || !slices.Equal(seqs(ops), []uint64{1, 2, 3}) {
		t.Fatalf("replayed %v (%v), want 1..3", seqs(ops), err)
	}
}

// Groups appended between two syncs are written with one write, in order.
func TestJournalFileGroupsOneWrite(t *testing.T) {
	dir := t.TempDir()
	j, _, err := openJournalFile(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 9; i += 3 {
		var buf []byte
		for _, o := range journalOps(t, i, i+2) {
			buf = appendJournalRecord(buf, o)
		}
		if err := j.append(buf, uint64(i), uint64(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	if j.cur != nil {
		t.Fatal("append wrote to a segment before sync")
	}
	if err := j.sync(); err != nil {
		t.Fatal(err)
	}
	if j.last != 9 || segments(t, dir)[0] != fmt.Sprintf("%016x%s", 1, journalSuffix) {
		t.Fatalf("segment %v holds up to %d", segments(t, dir), j.last)
	}
	j.close()
	if _, ops, err := openJournalFile(dir, 0); err != nil || !slices.Equal(seqs(ops), seqs(journalOps(t, 1, 9))) {
		t.Fatalf("replayed %v (%v)", seqs(ops), err)
	}
}

// Writers that come back with their next write as soon as they are
// answered share one fsync a round (the syncer waits for as many writes
// as it answered last time, up to state.sync_wait), and a lone writer,
// or what is left of the load, is still answered.
func TestJournalSharesFsyncsAmongSteadyWriters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.SyncWait = config.Duration(time.Second)
	s, done := openStateCfg(t, t.TempDir(), cfg, nil)
	defer done()

	const writers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				errs <- s.Add(ctx, testPin(t, 1000*w+r))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	syncs, writes := s.JournalStats()
	t.Logf("%d writes from %d writers in %d fsyncs", writes, writers, syncs)
	if writes != writers*rounds {
		t.Fatalf("%d writes acknowledged, want %d", writes, writers*rounds)
	}
	// Without the wait, each round's writes arrive over a few fsyncs.
	if syncs > rounds*3/2 {
		t.Errorf("%d writers × %d rounds took %d fsyncs, want about one a round", writers, rounds, syncs)
	}

	// The load shrinks to one writer: its first write waits at most
	// sync_wait, and then it is not held back at all.
	for i := range 5 {
		if err := s.Add(ctx, testPin(t, 100000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := s.JournalStats(); after-syncs != 5 {
		t.Errorf("5 writes by one writer took %d fsyncs", after-syncs)
	}
}

// A lone writer is never held back: with a sync_wait of an hour, each of
// its writes is still answered after its own fsync.
func TestJournalLoneWriterDoesNotWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.SyncWait = config.Duration(time.Hour)
	s, done := openStateCfg(t, t.TempDir(), cfg, nil)
	defer done()
	for i := range 50 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if syncs, writes := s.JournalStats(); syncs != 50 || writes != 50 {
		t.Fatalf("50 sequential writes: %d fsyncs, %d acknowledged", syncs, writes)
	}
}
