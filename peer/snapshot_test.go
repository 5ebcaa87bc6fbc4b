package peer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/wait"
	"github.com/pinring/pinring/trust"
)

// A new peer loads a writer's snapshot before it opens its pinset, and
// from there on follows the deltas; a peer whose only contact holds no
// write key gets no snapshot and syncs through the DAG.
func TestNewPeerStartsFromASnapshot(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	trusted := []trust.PublicKey{key.Public()}
	curator := startClusterPeer(t, "ring", key, nil)
	const n = 3000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := curator.Pin(ctx, api.Pin{Cid: benchCid(i), Type: api.DataType, MaxDepth: -1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := curator.state.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := curator.Digest(ctx)
	if err != nil || want.Pins != n {
		t.Fatalf("curator: %+v %v", want, err)
	}

	// It holds every pin the moment it starts: nothing was merged.
	fresh := startClusterPeer(t, "ring", nil, trusted, curator.P2PAddrs()[0].String())
	if fresh.snapshot == nil || fresh.snapshot.Blocks == 0 || len(fresh.snapshot.Heads) == 0 {
		t.Fatalf("the new peer loaded no snapshot: %+v", fresh.snapshot)
	}
	if got, _ := fresh.Digest(ctx); got != want {
		t.Fatalf("digest right after start %+v, want %+v", got, want)
	}
	if _, err := fresh.PinGet(ctx, benchCid(17)); err != nil {
		t.Fatal(err)
	}

	// Later writes arrive as deltas on top of the snapshot.
	if _, err := curator.Pin(ctx, api.Pin{Cid: benchCid(n), Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := curator.Unpin(ctx, benchCid(0)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the new peer follows later writes", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := fresh.Digest(ctx)
		return a == b && a.Pins == n
	})

	// A peer that joins while the curator keeps writing still gets a
	// consistent snapshot, and then every later write.
	stop := make(chan struct{})
	writing := make(chan int)
	go func() {
		i := n + 1
		defer func() { writing <- i }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := curator.Pin(ctx, api.Pin{Cid: benchCid(i), Type: api.DataType, MaxDepth: -1}); err != nil {
				t.Error(err)
				return
			}
			i++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	busy := startClusterPeer(t, "ring", nil, trusted, curator.P2PAddrs()[0].String())
	close(stop)
	written := <-writing
	if busy.snapshot == nil {
		t.Fatal("no snapshot while the curator was writing")
	}
	wait.For(t, "the peer that joined during writes converges", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := busy.Digest(ctx)
		return a == b && a.Pins == uint64(written-1)
	})
	t.Logf("joined during writes: snapshot at height %d, %d pins written meanwhile", busy.snapshot.Height, written-n-1)

	// A follower serves no snapshot: a peer that only knows the new
	// follower waits, gets nothing and syncs through the DAG.
	began := time.Now()
	late := startClusterPeerWith(t, "ring", nil, trusted, func(c *Config) {
		c.State.SnapshotWait = config.Duration(time.Second)
	}, fresh.P2PAddrs()[0].String())
	if late.snapshot != nil {
		t.Fatalf("a follower gave a snapshot: %+v", late.snapshot)
	}
	if waited := time.Since(began); waited < time.Second {
		t.Fatalf("started after %s without waiting for a snapshot", waited)
	}
	wait.For(t, "the late peer syncs through the DAG", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := late.Digest(ctx)
		return a == b
	})

	// A founding peer (no one to join) does not wait.
	began = time.Now()
	startClusterPeer(t, "other", key, nil)
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("a founder took %s to start", took)
	}
}
