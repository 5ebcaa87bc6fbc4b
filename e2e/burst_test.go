package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
)

// burstPins is the curator's bulk pin of issue 22.
const burstPins = 20000

// randomBlocks makes n random 100-byte raw blocks and their CIDs.
func randomBlocks(t *testing.T, n int) ([][]byte, []api.Cid) {
	blocks := make([][]byte, n)
	cids := make([]api.Cid, n)
	for i := range blocks {
		blocks[i] = make([]byte, 100)
		rand.Read(blocks[i])
		h, err := mh.Sum(blocks[i], mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		cids[i] = api.NewCid(cid.NewCidV1(cid.Raw, h))
	}
	return blocks, cids
}

// burstAtRF2: with the blocks already in every kubo (default StorageMax,
// 10 GB), 20,000 POST /pins/{cid}?replication-min=2&replication-max=2
// from 16 clients at one peer are all accepted, spread over the three
// peers, and every CID ends up pinned in exactly two kubos — its two
// allocated peers'. (Before the allocator reserved measured sizes, it
// assumed 10 MiB a pin and refused ~90 % of this burst.)
func burstAtRF2(t *testing.T, ps []*peerNode, ks []*kuboNode) {
	ctx := context.Background()
	blocks, cids := randomBlocks(t, burstPins)
	for _, k := range ks {
		kc := kuboClient(t, k)
		for i := 0; i < len(blocks); i += 1000 {
			if err := kc.BlockPutMany(ctx, blocks[i:min(i+1000, len(blocks))], "raw", "sha2-256"); err != nil {
				t.Fatal(err)
			}
		}
	}
	cl := ps[0].client(t)
	var next atomic.Int64
	var mu sync.Mutex
	var refused []error
	began := time.Now()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cids) {
					return
				}
				if _, err := cl.Pin(ctx, cids[i], api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); err != nil {
					mu.Lock()
					refused = append(refused, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(began)
	if len(refused) > 0 {
		t.Fatalf("%d of %d pins refused; the first: %v", len(refused), burstPins, refused[0])
	}
	t.Logf("%d pins accepted in %s (%.0f/s)", burstPins, accepted.Round(time.Millisecond), burstPins/accepted.Seconds())

	// Every pin has two allocations; each peer got a fair share.
	want := map[string][]int{} // CID → the kubos that must hold it
	index := map[string]int{}
	for i, p := range ps {
		id, err := p.client(t).ID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		index[id.ID.String()] = i
	}
	inBurst := map[string]bool{}
	for _, c := range cids {
		inBurst[c.String()] = true
	}
	share := make([]int, len(ps))
	err := cl.Allocations(ctx, "", func(p api.Pin) error {
		if !inBurst[p.Cid.String()] {
			return nil
		}
		if len(p.Allocations) != 2 {
			return fmt.Errorf("%s allocated to %v, want 2 peers", p.Cid, p.Allocations)
		}
		for _, a := range p.Allocations {
			i, ok := index[a.String()]
			if !ok {
				return fmt.Errorf("%s allocated to %s, not a peer of this ring", p.Cid, a)
			}
			want[p.Cid.String()] = append(want[p.Cid.String()], i)
			share[i]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != burstPins {
		t.Fatalf("%d of the burst's pins in the pinset, want %d", len(want), burstPins)
	}
	for i, n := range share {
		// 40,000 replicas over three peers: a third each, give or take.
		if n < 11000 || n > 15700 {
			t.Fatalf("peer %d holds %d of the 40,000 replicas (%v): the burst was not spread", i, n, share)
		}
	}
	t.Logf("replicas per peer: %v", share)

	// Each kubo ends up holding exactly the CIDs allocated to its peer.
	held := func(k *kuboNode) (map[string]bool, error) {
		out := make(chan api.IPFSPinInfo, 1024)
		errc := make(chan error, 1)
		go func() { errc <- kuboClient(t, k).PinLs(ctx, "recursive", out) }()
		got := map[string]bool{}
		for p := range out {
			if inBurst[p.Cid.String()] {
				got[p.Cid.String()] = true
			}
		}
		return got, <-errc
	}
	// missing says what is not yet as it must be ("" when all is).
	missing := func() string {
		for i, k := range ks {
			got, err := held(k)
			if err != nil {
				return err.Error()
			}
			for c, on := range want {
				if got[c] != (on[0] == i || on[1] == i) {
					return fmt.Sprintf("kubo %d holds %d of the burst's CIDs, its peer is allocated %d (%s: %v)", i, len(got), share[i], c, got[c])
				}
			}
		}
		return ""
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(time.Second) {
		m := missing()
		if m == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 minutes not every replica is pinned in its kubo: %s", m)
		}
	}
	t.Logf("every replica pinned in kubo %s after the first request (%.0f CIDs/s fully replicated)",
		time.Since(began).Round(time.Second), burstPins/time.Since(began).Seconds())
}
