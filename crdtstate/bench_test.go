package crdtstate

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// BenchmarkAddParallel measures pins/s into the pinset from 64 concurrent
// writers (the writer loop batches them), until all are packed into deltas. Run with -benchtime=100000x for
// the 100,000-pin figure.
// PINRING_BENCH_BATCH_SIZE sets state.batch_size. It also reports the
// process's CPU time (user + system) a pin, steadier than pins/s on a
// shared machine.
func BenchmarkAddParallel(b *testing.B) {
	cfg := DefaultConfig()
	if v := os.Getenv("PINRING_BENCH_BATCH_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("PINRING_BENCH_BATCH_SIZE: %v", err)
		}
		cfg.BatchSize = n
	}
	s, done := openStateCfg(b, b.TempDir(), cfg, nil)
	defer done()
	pins := make([]*api.Pin, b.N)
	for i := range pins {
		pins[i] = testPin(b, i)
	}
	ctx := context.Background()
	work := make(chan *api.Pin)
	var wg sync.WaitGroup
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := s.Add(ctx, p); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, p := range pins {
		work <- p
	}
	close(work)
	wg.Wait()
	// Count until every write is packed into the CRDT too.
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pins/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/pin")
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkList measures streaming the whole pinset of 100,000 pins.
func BenchmarkList(b *testing.B) {
	s, done := openState(b, b.TempDir(), nil)
	defer done()
	ctx := context.Background()
	const n = 100_000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := s.Add(ctx, testPin(b, i)); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	b.ResetTimer()
	for range b.N {
		out := make(chan api.Pin, 1024)
		go func() {
			if err := s.List(ctx, out); err != nil {
				b.Error(err)
			}
		}()
		got := 0
		for range out {
			got++
		}
		if got != n {
			b.Fatalf("listed %d of %d", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "pins/s")
}

// BenchmarkDecodePin measures decoding one typical record.
func BenchmarkDecodePin(b *testing.B) {
	b.ReportAllocs()
	p := testPin(b, 1)
	p.Timestamp = time.Now()
	enc := EncodePin(p)
	for b.Loop() {
		if _, err := DecodePin(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEpochUnderChurn shows what an epoch does to a pinset's store:
// PINRING_BENCH_LIVE live pins (10,000), then PINRING_BENCH_OPS
// operations (200,000; each pin removed and added again, round after
// round, every round packed on its own), printing the directory's size on
// disk and the time a round took as they add up; then a new epoch (the
// live pins copied, the old epoch dropped) and one more round in it. Run
// it once: go test -run XXX -bench EpochUnderChurn -benchtime 1x ./crdtstate
func BenchmarkEpochUnderChurn(b *testing.B) {
	live, ops := envInt(b, "PINRING_BENCH_LIVE", 10000), envInt(b, "PINRING_BENCH_OPS", 200000)
	ctx := context.Background()
	for range b.N {
		dir := b.TempDir()
		store, err := OpenBadger(dir)
		if err != nil {
			b.Fatal(err)
		}
		open := func(ns string) *State {
			s, err := New(ctx, DefaultConfig(), Deps{Store: store, Namespace: ns, JournalDir: JournalDir(dir, ns)})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		s := open(testNS)
		round := func(s *State, f func(i int) error) time.Duration {
			began := time.Now()
			work := make(chan int)
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						if err := f(i); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := range live {
				work <- i
			}
			close(work)
			wg.Wait()
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			return time.Since(began)
		}
		add := func(s *State) func(int) error {
			return func(i int) error { return s.Add(ctx, testPin(b, i)) }
		}
		rm := func(s *State) func(int) error {
			return func(i int) error { return s.Rm(ctx, testkit.Cid(i)) }
		}
		round(s, add(s))
		first := diskUsage(b, dir)
		fmt.Printf("epoch bench: %d live pins: %.1f MiB on disk\n", live, mib(first))
		done, step := 0, max(ops/10, 2*live)
		var last time.Duration
		for next := step; done < ops; next += step {
			for done < next && done < ops {
				last = round(s, rm(s)) + round(s, add(s))
				done += 2 * live
			}
			size := diskUsage(b, dir)
			fmt.Printf("epoch bench: %d operations: %.1f MiB (%.2f×); the last %d took %s (%.0f ops/s)\n",
				done, mib(size), float64(size)/float64(first), 2*live, last.Round(time.Millisecond), float64(2*live)/last.Seconds())
		}
		catchUp(b, s, "the old epoch")
		began := time.Now()
		ns1 := EpochNamespace(testNS, 1)
		cur := open(ns1)
		st, err := CopyLive(ctx, s, cur)
		if err != nil {
			b.Fatal(err)
		}
		if err := cur.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := DropEpoch(ctx, store, testNS, "", ns1, JournalDir(dir, testNS)); err != nil {
			b.Fatal(err)
		}
		size := diskUsage(b, dir)
		fmt.Printf("epoch bench: new epoch (%d pins copied, old epoch dropped) in %s: %.1f MiB (%.2f× the first %d pins)\n",
			st.Pins, time.Since(began).Round(time.Millisecond), mib(size), float64(size)/float64(first), live)
		catchUp(b, cur, "the new epoch")
		last = round(cur, rm(cur)) + round(cur, add(cur))
		size = diskUsage(b, dir)
		fmt.Printf("epoch bench: one round in the new epoch: %.1f MiB (%.2f×); %d operations took %s (%.0f ops/s)\n",
			mib(size), float64(size)/float64(first), 2*live, last.Round(time.Millisecond), float64(2*live)/last.Seconds())
		b.ReportMetric(float64(size)/float64(first), "size-ratio")
		if err := cur.Close(); err != nil {
			b.Fatal(err)
		}
		if err := store.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// catchUp prints what a new peer's snapshot catch-up (ADR 5) of s costs:
// the snapshot's size and the time to write it and load it into an empty
// store, as the snapshot protocol does over the network.
func catchUp(b *testing.B, s *State, what string) {
	ctx := context.Background()
	var buf bytes.Buffer
	began := time.Now()
	st, err := s.WriteSnapshot(ctx, &buf)
	if err != nil {
		b.Fatal(err)
	}
	wrote := time.Since(began)
	dir := b.TempDir()
	store, err := OpenBadger(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	began = time.Now()
	if _, err := LoadSnapshot(ctx, store, s.deps.Namespace, "", &buf); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("epoch bench: a new peer's snapshot of %s: %d pairs, %.1f MiB, written in %s, loaded in %s\n",
		what, st.Pairs, mib(st.Bytes), wrote.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s: %q is not a positive number", name, v)
	}
	return n
}

// diskUsage is what the files under dir take on disk (allocated blocks,
// as du counts them: Badger's files are sparse).
func diskUsage(b testing.TB, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
