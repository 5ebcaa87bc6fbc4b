package crdtstate

import (
	"context"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
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
