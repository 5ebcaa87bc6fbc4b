package e2e

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAddThroughputFigures runs when PINRING_BENCH_ADD=1 and prints the
// add figures of the closing note (it is a measurement, not a check).
func TestAddThroughputFigures(t *testing.T) {
	if os.Getenv("PINRING_BENCH_ADD") == "" {
		t.Skip("measurement: run with PINRING_BENCH_ADD=1 (PINRING_BENCH_MIB=256 by default)")
	}
	mib := 256
	if v := os.Getenv("PINRING_BENCH_MIB"); v != "" {
		mib = 0
		for _, c := range v {
			mib = mib*10 + int(c-'0')
		}
	}
	k := startKubo(t)
	p := newPeer(t, k)
	p.start(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "big.bin")
	f, _ := os.Create(file)
	io.CopyN(f, rand.Reader, int64(mib)<<20)
	f.Close()
	rate := func(d time.Duration) float64 { return float64(mib) / d.Seconds() }
	start := time.Now()
	want := strings.TrimSpace(k.ipfs(t, "add", "-q", "--pin=false", file))
	t.Logf("ipfs add (same kubo):            %6.1f MiB/s", rate(time.Since(start)))
	k.ipfs(t, "repo", "gc")
	start = time.Now()
	got := strings.TrimSpace(p.mustCtl(t, "add", "-Q", file))
	t.Logf("cluster-ctl add:                 %6.1f MiB/s", rate(time.Since(start)))
	if got != want {
		t.Fatalf("CIDs differ: %s vs %s", got, want)
	}
	start = time.Now()
	root := strings.TrimSpace(p.mustCtl(t, "add", "-Q", "--erasure", "--data-shards", "4", "--parity-shards", "2", file))
	t.Logf("cluster-ctl add --erasure 4+2:   %6.1f MiB/s", rate(time.Since(start)))
	back := filepath.Join(dir, "back.bin")
	start = time.Now()
	p.mustCtl(t, "ec", "get", root, "-o", back)
	t.Logf("cluster-ctl ec get (all shards): %6.1f MiB/s", rate(time.Since(start)))
	a, _ := os.ReadFile(file)
	c, _ := os.ReadFile(back)
	if !bytes.Equal(a, c) {
		t.Fatal("ec get differs")
	}
}
