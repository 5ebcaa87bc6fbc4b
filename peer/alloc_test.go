package peer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/allocate"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/fakekubo"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/pubsubmon"
)

// sizedKubo is a fake kubo with a repository of storageMax bytes that
// grows by pinBytes for every distinct CID pinned: what a peer measures
// for its freespace and pinsize metrics.
func sizedKubo(tb testing.TB, storageMax, pinBytes uint64) string {
	k, err := fakekubo.New(storageMax, pinBytes)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { k.Close() })
	return k.Addr
}

// sizedRing starts three writers whose kubos hold storageMax bytes and
// grow pinBytes a pin, and waits until each sees the three freespace
// metrics.
func sizedRing(t *testing.T, name string, storageMax, pinBytes uint64) []*Peer {
	key := newWriteKey(t)
	mod := func(c *peerconfig.Config) {
		// Pins on their way are counted over a metric TTL (3 intervals):
		// that must cover a pin's crossing of the ring. With 200 ms and
		// one interval, make test's load broke it (400 pins accepted by
		// 3 × 100 MiB).
		c.Monitor.Interval = config.Duration(time.Second)
		c.IPFS.API = sizedKubo(t, storageMax, pinBytes)
		c.Tracker.RecoverInterval = config.Duration(time.Hour)
		c.Repair.Interval = config.Duration(time.Hour)
	}
	a := startClusterPeerWith(t, name, key, nil, mod)
	addr := a.P2PAddrs()[0].String()
	ps := []*Peer{a, startClusterPeerWith(t, name, key, nil, mod, addr), startClusterPeerWith(t, name, key, nil, mod, addr)}
	testkit.WaitFor(t, 10*time.Second, "every peer's freespace metric at a", func() bool { return len(a.candidates()) == 3 })
	return ps
}

func pinRF(ctx context.Context, p *Peer, i, rf int) (api.Pin, error) {
	return p.Pin(ctx, api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: rf, ReplicationFactorMax: rf}})
}

// A burst far larger than one heartbeat's worth of any guessed pin size
// is accepted whole when the blocks cost nothing, and spread evenly: with
// the old fixed estimate (10 MiB a pin) 1 GiB of free space took ~100
// pins per peer per heartbeat and refused the rest.
func TestBurstIsAcceptedAndSpread(t *testing.T) {
	ctx := context.Background()
	ps := sizedRing(t, "burst", 1<<30, 0)
	const n = 3000
	got := map[peer.ID]int{}
	for i := range n {
		pin, err := pinRF(ctx, ps[0], i, 2)
		if err != nil {
			t.Fatalf("pin %d of %d refused: %v", i, n, err)
		}
		for _, a := range pin.Allocations {
			got[a]++
		}
	}
	for _, p := range ps {
		if c := got[p.PeerID()]; c < 1700 || c > 2300 {
			t.Fatalf("peer %s got %d of %d replicas: not spread (%v)", p.PeerID(), c, 2*n, got)
		}
	}
}

// With pins that really take 1 MiB and 100 MiB repos (full at 90 %), the
// peers measure the size, the pins on their way reserve it, and the ring
// refuses once it is truly out of room — saying what is free and needed —
// and never accepts more than it holds: in one burst, and paced over many
// heartbeats, where pins already in a repo must not stay reserved too (a
// fixed window of a metric TTL did that, and a slow burst was refused at
// 230 pins of the ~270 that fit).
func TestRefusedOnlyWhenTheRingIsFull(t *testing.T) {
	t.Run("burst", func(t *testing.T) { refusedOnlyWhenFull(t, 0) })
	t.Run("paced", func(t *testing.T) { refusedOnlyWhenFull(t, 40) })
}

// refusedOnlyWhenFull pins 1 MiB pins until refused, waiting for every
// peer's next heartbeat after each pace pins (0: never).
func refusedOnlyWhenFull(t *testing.T, pace int) {
	ctx := context.Background()
	const MiB = 1 << 20
	ps := sizedRing(t, "full", 100*MiB, MiB)
	// One pin on every peer: each measures what a pin takes.
	if _, err := pinRF(ctx, ps[0], 0, -1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "every peer's pinsize metric at a", func() bool {
		return len(ps[0].monitor.LatestValid(pubsubmon.MetricPinSize)) == 3
	})
	for _, mt := range ps[0].monitor.LatestValid(pubsubmon.MetricPinSize) {
		if mt.Value != fmt.Sprint(MiB) {
			t.Fatalf("%s measured %s bytes a pin, want %d", mt.Peer, mt.Value, MiB)
		}
	}
	accepted := 0
	var refusal error
	for i := 1; i <= 400 && refusal == nil; i++ {
		if pace > 0 && i%pace == 0 {
			time.Sleep(1200 * time.Millisecond) // monitor.interval is 1 s
		}
		if _, err := pinRF(ctx, ps[0], i, 1); err != nil {
			refusal = err
		} else {
			accepted++
		}
	}
	if refusal == nil {
		t.Fatalf("400 pins of 1 MiB accepted by three peers of 100 MiB")
	}
	if !errors.Is(refusal, allocate.ErrNotEnoughPeers) || !strings.Contains(refusal.Error(), "MiB free") {
		t.Fatalf("refusal %q does not say what is free", refusal)
	}
	// 3 × 99 MiB were free: the reservations stop at most there.
	if accepted > 297 || accepted < 240 {
		t.Fatalf("%d pins of 1 MiB accepted, want what 3 × 99 MiB hold (up to the 90 %% thresholds)", accepted)
	}
	t.Logf("accepted %d, then: %v", accepted, refusal)
}
