package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// fastRepair makes metrics, repair and expiry run in seconds.
var fastRepair = []string{
	"PINRING_MONITOR_INTERVAL=1s",
	"PINRING_REPAIR_GRACE=2s",
	"PINRING_REPAIR_INTERVAL=1s",
	"PINRING_REPAIR_EXPIRY_INTERVAL=1s",
}

// TestAllocationAndRepair: 4 kubos and 4 peers. Pins with rmin=rmax=2
// land on exactly two peers each (a burst spreads over the peers); the
// others show them as remote. When a peer is SIGKILLed, every pin it held
// is pinned on two live peers again without any command, each re-allocated
// once; when it comes back it unpins what is no longer allocated to it.
// Expired pins leave the cluster.
func TestAllocationAndRepair(t *testing.T) {
	ctx := context.Background()
	const n = 4
	var ks []*kuboNode
	for range n {
		ks = append(ks, startKubo(t))
	}
	first := newPeer(t, ks[0])
	first.env = append(first.env, fastRepair...)
	first.start(t)
	ps := []*peerNode{first}
	ids := map[peer.ID]int{}
	for i := range n {
		if i > 0 {
			p := joinPeer(t, ks[i], first)
			p.env = append(p.env, fastRepair...)
			p.start(t)
			ps = append(ps, p)
		}
		id, err := ps[i].client(t).ID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[id.ID] = i
	}
	testkit.WaitFor(t, 60*time.Second, "every peer's freespace metric at every peer", func() bool {
		for _, p := range ps {
			ms, err := p.client(t).Metrics(ctx, "freespace")
			if err != nil || len(ms) != n {
				return false
			}
		}
		return true
	})
	if out := first.mustCtl(t, "health", "metrics", "freespace"); strings.Count(out, "freespace:") != n {
		t.Fatalf("health metrics freespace:\n%s", out)
	}

	allocated := func(p api.Pin) []int {
		var out []int
		for _, a := range p.Allocations {
			out = append(out, ids[a])
		}
		slices.Sort(out)
		return out
	}
	holds := func(i int, c api.Cid) bool {
		st, err := kuboClient(t, ks[i]).PinLsCid(ctx, c)
		return err == nil && st == api.IPFSPinRecursive
	}
	// pinnedOn checks that exactly the allocated kubos hold c.
	pinnedOn := func(c api.Cid, want []int) bool {
		for i := range n {
			if holds(i, c) != slices.Contains(want, i) {
				return false
			}
		}
		return true
	}

	var cids []api.Cid
	pins := map[api.Cid]api.Pin{}
	for i := range 12 {
		c, err := kuboClient(t, ks[0]).BlockPut(ctx, fmt.Appendf(nil, "replicated twice %d", i), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first.mustCtl(t, "pin", "add", "--replication", "2", "--name", "twice", c.String())
		} else if _, err := first.client(t).Pin(ctx, c, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); err != nil {
			t.Fatal(err)
		}
		pin, err := first.client(t).Allocation(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(pin.Allocations) != 2 {
			t.Fatalf("allocations %v, want 2 peers", pin.Allocations)
		}
		cids = append(cids, c)
		pins[c] = pin
	}
	testkit.WaitFor(t, 90*time.Second, "every pin on exactly its two allocated kubos", func() bool {
		for _, c := range cids {
			if !pinnedOn(c, allocated(pins[c])) {
				return false
			}
		}
		return true
	})
	c := cids[0]
	testkit.WaitFor(t, 30*time.Second, "status [2/2] with two PINNED", func() bool {
		out, err := first.ctl(t, "status", c.String())
		return err == nil && strings.Contains(out, "[2/2]") && strings.Count(out, "PINNED") == 2
	})
	for i := range n {
		if slices.Contains(allocated(pins[c]), i) {
			continue
		}
		g, err := ps[i].client(t).Status(ctx, c, true)
		if err != nil || g.PeerMap[pidOf(ids, i).String()].Status != api.StatusRemote {
			t.Fatalf("unallocated peer %d's own status: %+v, %v; want remote", i, g, err)
		}
	}

	t.Run("a burst spreads over the peers", func(t *testing.T) {
		used := map[int]int{}
		for i := range 40 {
			bc, err := kuboClient(t, ks[0]).BlockPut(ctx, fmt.Appendf(nil, "burst %d", i), "raw", "sha2-256")
			if err != nil {
				t.Fatal(err)
			}
			p, err := first.client(t).Pin(ctx, bc, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1})
			if err != nil {
				t.Fatal(err)
			}
			used[ids[p.Allocations[0]]]++
		}
		if len(used) < n {
			t.Fatalf("40 pins with one replica each went to %d of %d peers: %v", len(used), n, used)
		}
	})

	// The victim: the peer (not the first, whose API the test uses) that
	// holds the most of the twelve pins.
	held := map[int][]api.Cid{}
	for _, c := range cids {
		for _, i := range allocated(pins[c]) {
			held[i] = append(held[i], c)
		}
	}
	victim := 1
	for i := 2; i < n; i++ {
		if len(held[i]) > len(held[victim]) {
			victim = i
		}
	}
	t.Run("a killed peer's pins are pinned twice again, each re-allocated once", func(t *testing.T) {
		if len(held[victim]) == 0 {
			t.Skip("the victim holds none of the pins")
		}
		if err := ps[victim].proc.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ps[victim].proc.wait(10 * time.Second)
		start := time.Now()
		testkit.WaitFor(t, 120*time.Second, fmt.Sprintf("the %d pins the victim held on two live kubos", len(held[victim])), func() bool {
			for _, c := range held[victim] {
				p, err := first.client(t).Allocation(ctx, c)
				if err != nil || len(p.Allocations) != 2 || slices.Contains(allocated(p), victim) {
					return false
				}
				for _, i := range allocated(p) {
					if !holds(i, c) {
						return false
					}
				}
			}
			return true
		})
		t.Logf("%d replicas restored %s after SIGKILL (metric TTL 3s + grace 2s)", len(held[victim]), time.Since(start).Round(100*time.Millisecond))
		// Exactly one peer re-allocated each pin: one new version each.
		time.Sleep(3 * time.Second)
		for _, c := range held[victim] {
			for i := range n {
				if i == victim {
					continue
				}
				p, err := ps[i].client(t).Allocation(ctx, c)
				if err != nil || p.Version != pins[c].Version+1 {
					t.Fatalf("peer %d: %s at version %d after repair (was %d): re-allocated more than once? %v", i, c, p.Version, pins[c].Version, err)
				}
			}
		}
		alerts, err := first.client(t).Alerts(ctx)
		if err != nil || !slices.ContainsFunc(alerts, func(a api.Alert) bool { return ids[a.Peer] == victim }) {
			t.Fatalf("no alert for the killed peer: %+v, %v", alerts, err)
		}
		if out := first.mustCtl(t, "health", "alerts"); !strings.Contains(out, "ping expired") {
			t.Fatalf("health alerts:\n%s", out)
		}
	})

	t.Run("the replaced peer unpins what is no longer its own", func(t *testing.T) {
		if len(held[victim]) == 0 || !holds(victim, held[victim][0]) {
			t.Skip("the killed peer's kubo holds none of the pins")
		}
		ps[victim].start(t)
		testkit.WaitFor(t, 60*time.Second, "the returning peer's kubo to unpin", func() bool {
			for _, c := range held[victim] {
				if holds(victim, c) {
					return false
				}
			}
			return true
		})
	})

	t.Run("expired pins leave the cluster", func(t *testing.T) {
		ec, err := kuboClient(t, ks[0]).BlockPut(ctx, []byte("short-lived"), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		first.mustCtl(t, "pin", "add", "--expire-in", "2s", ec.String())
		testkit.WaitFor(t, 60*time.Second, "the expired pin to be gone everywhere", func() bool {
			for _, p := range ps {
				if _, err := p.client(t).Allocation(ctx, ec); err == nil {
					return false
				}
			}
			return true
		})
	})
}

func pidOf(ids map[peer.ID]int, i int) peer.ID {
	for id, j := range ids {
		if j == i {
			return id
		}
	}
	return ""
}
