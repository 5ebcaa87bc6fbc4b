package peer

import (
	"context"
	"sync"
	"testing"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/trust"
)

// quickKubo answers the kubo calls a peer makes, instantly, so that the
// benchmark measures Pinring's REST → pinset path and not kubo: a 10 GB
// repo whose pins take no room.
func quickKubo(tb testing.TB) string { return sizedKubo(tb, 10_000_000_000, 0) }

func newWriteKey(tb testing.TB) *trust.WriteKey {
	k, err := trust.NewWriteKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// giveWriteKey makes the peer in dir a writer with k (nil: a follower of
// no key, which cannot start) and trusts k.
func giveWriteKey(tb testing.TB, cfg *peerconfig.Config, dir string, k *trust.WriteKey, trusted ...trust.PublicKey) {
	tb.Helper()
	if k != nil {
		if err := k.Save(cfg.WriteKeyPath(dir), true); err != nil {
			tb.Fatal(err)
		}
		trusted = append(trusted, k.Public())
	}
	for _, pk := range trusted {
		cfg.Trust.WriteKeys = append(cfg.Trust.WriteKeys, pk.String())
	}
}

func startTestPeer(tb testing.TB) *Peer {
	dir := tb.TempDir()
	if _, err := peerconfig.NewIdentity(dir); err != nil {
		tb.Fatal(err)
	}
	cfg := peerconfig.DefaultConfig()
	giveWriteKey(tb, &cfg, dir, newWriteKey(tb))
	cfg.API.Listen = "127.0.0.1:0"
	cfg.IPFS.API = quickKubo(tb)
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Tracker.RecoverInterval = config.Duration(1 << 40)
	p, err := New(context.Background(), cfg, dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// BenchmarkRESTPin sends b.N POST /pins/{cid} from 16 parallel clients to
// one peer; every response means a durable write. Run with
// -benchtime=10000x for the figure.
func BenchmarkRESTPin(b *testing.B) {
	p := startTestPeer(b)
	cl, err := client.New(p.APIAddr(), 0)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := cl.Pin(ctx, testkit.Cid(i), api.PinOptions{Name: "bench"}); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range b.N {
		work <- i
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pins/s")
	b.StopTimer()
	d, err := cl.Digest(ctx)
	if err != nil || d.Pins != uint64(b.N) {
		b.Fatalf("pinset holds %d pins after %d requests (%v)", d.Pins, b.N, err)
	}
}
