package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// loopbackP2P returns the peer's /p2p address on 127.0.0.1.
func loopbackP2P(t *testing.T, p *peerNode) string {
	id, err := p.client(t).ID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range id.Addresses {
		if strings.HasPrefix(a.String(), "/ip4/127.0.0.1/tcp/") {
			return a.String()
		}
	}
	t.Fatalf("no loopback address in %v", id.Addresses)
	return ""
}

func digests(t *testing.T, ps ...*peerNode) []api.StateDigest {
	var out []api.StateDigest
	for _, p := range ps {
		d, err := p.client(t).Digest(context.Background())
		if err != nil {
			d = api.StateDigest{Digest: "error: " + err.Error()}
		}
		out = append(out, d)
	}
	return out
}

func converged(t *testing.T, want uint64, ps ...*peerNode) bool {
	ds := digests(t, ps...)
	for _, d := range ds {
		if d != ds[0] || d.Pins != want {
			return false
		}
	}
	return true
}

// TestThreePeers: 3 kubos and 3 peers on loopback, no leader. Pins added at
// each peer are pinned by every kubo; a peer SIGKILLed during a bulk add
// comes back with every acknowledged pin; a brand-new peer syncs it all.
func TestThreePeers(t *testing.T) {
	ctx := context.Background()
	ks := []*kuboNode{startKubo(t), startKubo(t), startKubo(t)}
	first := newPeer(t, ks[0])
	first.start(t)
	ps := []*peerNode{first, joinPeer(t, ks[1], first), joinPeer(t, ks[2], first)}
	ps[1].start(t)
	ps[2].start(t)

	testkit.WaitFor(t, 60*time.Second, "every peer to see the other two, connected", func() bool {
		for _, p := range ps {
			n := 0
			err := p.client(t).Peers(ctx, func(id api.ID) error {
				if id.Connected {
					n++
				}
				return nil
			})
			if err != nil || n != 2 {
				return false
			}
		}
		return true
	})
	testkit.WaitFor(t, 30*time.Second, "the connectivity graph to show every peer, and every kubo, connected to the two others", func() bool {
		out, err := ps[0].ctl(t, "health", "graph")
		kuboLinks := strings.Count(out, "[color=gray]")
		return err == nil && strings.HasPrefix(out, "digraph cluster {") &&
			strings.Count(out, "shape=box") == 3 && strings.Count(out, "shape=ellipse") == 3 &&
			strings.Count(out, " -> ")-strings.Count(out, "style=dashed")-kuboLinks == 6 && kuboLinks == 6
	})

	// Content exists in one kubo only; each peer pins its own.
	var cids []api.Cid
	for i, p := range ps {
		c, err := kuboClient(t, ks[i]).BlockPut(ctx, fmt.Appendf(nil, "cluster content %d", i), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		p.mustCtl(t, "pin", "add", "--name", fmt.Sprint("from-", i), c.String())
		cids = append(cids, c)
	}
	testkit.WaitFor(t, 90*time.Second, "all three kubos to pin all three CIDs", func() bool {
		for _, k := range ks {
			for _, c := range cids {
				if st, err := kuboClient(t, k).PinLsCid(ctx, c); err != nil || st != api.IPFSPinRecursive {
					return false
				}
			}
		}
		return true
	})
	testkit.WaitFor(t, 30*time.Second, "equal digests", func() bool { return converged(t, 3, ps...) })

	t.Run("SIGKILL during a bulk add loses no acknowledged pin", func(t *testing.T) {
		victim := ps[2]
		cl := victim.client(t)
		var mu sync.Mutex
		var acked []api.Cid
		var wg sync.WaitGroup
		stop := make(chan struct{})
		kubo3 := kuboClient(t, ks[2])
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := kubo3.BlockPut(ctx, fmt.Appendf(nil, "bulk %d-%d", w, i), "raw", "sha2-256")
					if err != nil {
						return
					}
					if _, err := cl.Pin(ctx, c, api.PinOptions{}); err != nil {
						return // the peer was killed mid-request: not acknowledged
					}
					mu.Lock()
					acked = append(acked, c)
					mu.Unlock()
				}
			}()
		}
		testkit.WaitFor(t, 60*time.Second, "100 acknowledged pins", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= 100
		})
		if err := victim.proc.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		victim.proc.wait(10 * time.Second)
		victim.start(t)
		total := uint64(3 + len(acked))
		testkit.WaitFor(t, 120*time.Second, fmt.Sprintf("digests equal with %d pins", total), func() bool {
			// Unacknowledged writes may also have landed; every
			// acknowledged one must be there.
			ds := digests(t, ps...)
			return ds[0] == ds[1] && ds[1] == ds[2] && ds[0].Pins >= total
		})
		for _, p := range ps {
			for _, c := range acked {
				if _, err := p.client(t).Allocation(ctx, c); err != nil {
					t.Fatalf("acknowledged pin %s missing on %s: %v", c, p.api, err)
				}
			}
		}
	})

	t.Run("a burst of 20,000 pins at rmin=rmax=2 is accepted whole and pinned twice", func(t *testing.T) {
		burstAtRF2(t, ps, ks)
	})

	t.Run("a brand-new empty peer syncs the whole pinset", func(t *testing.T) {
		want := digests(t, ps[0])[0]
		// A read-only peer from a ticket; it shares the first kubo.
		late := newPeer(t, ks[0], "--ticket", ps[0].ticket(t))
		late.start(t)
		// It started from a writer's snapshot (ADR 5), not by merging
		// every delta.
		if log := late.proc.log.String(); !strings.Contains(log, "loaded a snapshot from") {
			t.Errorf("the new peer loaded no snapshot; its log:\n%s", lastLines(log, 40))
		}
		testkit.WaitFor(t, 120*time.Second, "the new peer's digest", func() bool {
			return digests(t, late)[0] == want
		})
	})
}

// A pin removed at one peer leaves the other peers' kubos, also when kubo
// holds it as CIDv0 (the pinset keys CIDs as v1; kubo pins the exact CID).
func TestRemoteUnpinReachesKubo(t *testing.T) {
	ks := []*kuboNode{startKubo(t), startKubo(t)}
	a := newPeer(t, ks[0])
	a.start(t)
	b := joinPeer(t, ks[1], a)
	b.start(t)
	c := strings.TrimSpace(ks[0].ipfs(t, "add", "-q", "--pin=false", "--cid-version=0", "../README.md"))
	if !strings.HasPrefix(c, "Qm") {
		t.Fatalf("want a CIDv0, got %s", c)
	}
	a.mustCtl(t, "pin", "add", c)
	pinnedIn := func(k *kuboNode) bool {
		out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", c)
		return err == nil && strings.Contains(out, c)
	}
	testkit.WaitFor(t, 60*time.Second, "both kubos to pin it", func() bool { return pinnedIn(ks[0]) && pinnedIn(ks[1]) })
	// The graph shows the kubos connected to each other (each peer asked
	// its kubo to connect to the other's), and both peers as writers.
	var g api.Graph
	if err := json.Unmarshal([]byte(a.mustCtl(t, "--json", "health", "graph")), &g); err != nil {
		t.Fatal(err)
	}
	ka, kb := g.ClusterToIPFS[g.ClusterID.String()], peer.ID("")
	for id, k := range g.ClusterToIPFS {
		if id != g.ClusterID.String() {
			kb = k
		}
	}
	if !slices.Contains(g.IPFSLinks[ka.String()], kb) || len(g.ClusterTrustLinks) != 2 || !g.ClusterTrustLinks[g.ClusterID.String()] {
		t.Fatalf("graph: kubo %s links %v (want %s), trust %v", ka, g.IPFSLinks, kb, g.ClusterTrustLinks)
	}
	a.mustCtl(t, "pin", "rm", c)
	testkit.WaitFor(t, 30*time.Second, "both kubos to unpin it", func() bool { return !pinnedIn(ks[0]) && !pinnedIn(ks[1]) })

	// The unpinned blocks stay in both kubos until a garbage collection,
	// which one command runs on every peer; what is pinned stays.
	has := func(k *kuboNode, c string) bool {
		_, err := runCmd(t, k.env, kubo, "--offline", "block", "stat", c)
		return err == nil
	}
	kept := strings.TrimSpace(ks[1].ipfs(t, "add", "-q", "--pin=false", "../go.mod"))
	a.mustCtl(t, "pin", "add", "--wait", "--wait-timeout", "60s", kept)
	if !has(ks[0], c) || !has(ks[1], c) {
		t.Fatal("the unpinned blocks are gone before any garbage collection; the test would prove nothing")
	}
	out := a.mustCtl(t, "ipfs", "gc")
	if strings.Count(out, "blocks removed") != 2 || strings.Contains(out, "error") {
		t.Fatalf("cluster-ctl ipfs gc:\n%s", out)
	}
	for i, k := range ks {
		if has(k, c) {
			t.Fatalf("kubo %d still has the unpinned block after ipfs gc", i)
		}
		if !has(k, kept) {
			t.Fatalf("kubo %d lost a pinned block to ipfs gc", i)
		}
	}
	if out := a.mustCtl(t, "ipfs", "gc", "--local"); strings.Count(out, "blocks removed") != 1 {
		t.Fatalf("cluster-ctl ipfs gc --local:\n%s", out)
	}
	if out := a.mustCtl(t, "health", "bandwidth"); !strings.Contains(out, "/meshsub/") {
		t.Fatalf("cluster-ctl health bandwidth shows no gossipsub traffic:\n%s", out)
	}

	// add --local: the blocks stay in a's kubo, b (the only allocation)
	// fetches them from there when it pins.
	bid, err := b.client(t).ID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(file, []byte("added with --local"), 0o600); err != nil {
		t.Fatal(err)
	}
	added := strings.TrimSpace(a.mustCtl(t, "add", "-Q", "--local", "--rmin", "1", "--rmax", "1",
		"--allocations", bid.ID.String(), "--wait", "--wait-timeout", "60s", file))
	if !strings.Contains(mustRun(t, ks[1].env, kubo, "pin", "ls", "--type=recursive"), added) {
		t.Fatalf("b's kubo does not pin %s after add --local --wait", added)
	}
	if out := mustRun(t, ks[0].env, kubo, "pin", "ls", "--type=recursive"); strings.Contains(out, added) {
		t.Fatalf("a's kubo pins %s, allocated to b only", added)
	}
}
