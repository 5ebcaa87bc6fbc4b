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
)

// fastRepair makes metrics, repair and expiry run in seconds.
var fastRepair = []string{
	"PINRING_MONITOR_INTERVAL=1s",
	"PINRING_REPAIR_GRACE=2s",
	"PINRING_REPAIR_INTERVAL=1s",
	"PINRING_REPAIR_EXPIRY_INTERVAL=1s",
}

// TestAllocationAndRepair: 3 kubos and 3 peers. Pins with a replication
// factor land on that many peers (a burst spreads over the peers); the
// others show them as remote. When an allocated peer is killed, its
// replica is re-created on the third peer without any command; when it
// comes back it unpins what is no longer allocated to it. Expired pins
// leave the cluster.
func TestAllocationAndRepair(t *testing.T) {
	ctx := context.Background()
	ks := []*kuboNode{startKubo(t), startKubo(t), startKubo(t)}
	first := newPeer(t, ks[0])
	first.env = append(first.env, fastRepair...)
	first.start(t)
	join := loopbackP2P(t, first)
	ps := []*peerNode{first, newPeer(t, ks[1], "--join", join), newPeer(t, ks[2], "--join", join)}
	ids := map[peer.ID]int{}
	for i, p := range ps {
		if i > 0 {
			p.env = append(p.env, fastRepair...)
			p.start(t)
		}
		id, err := p.client(t).ID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[id.ID] = i
	}
	waitFor(t, 60*time.Second, "every peer's freespace metric at every peer", func() bool {
		for _, p := range ps {
			ms, err := p.client(t).Metrics(ctx, "freespace")
			if err != nil || len(ms) != 3 {
				return false
			}
		}
		return true
	})
	if out := first.mustCtl(t, "health", "metrics", "freespace"); strings.Count(out, "freespace:") != 3 {
		t.Fatalf("health metrics freespace:\n%s", out)
	}

	c, err := kuboClient(t, ks[0]).BlockPut(ctx, []byte("replicated twice"), "raw", "sha2-256")
	if err != nil {
		t.Fatal(err)
	}
	first.mustCtl(t, "pin", "add", "--rmin", "1", "--rmax", "2", "--name", "twice", c.String())
	pin, err := first.client(t).Allocation(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 2 {
		t.Fatalf("allocations %v, want 2 peers", pin.Allocations)
	}
	holds := func(i int) bool {
		st, err := kuboClient(t, ks[i]).PinLsCid(ctx, c)
		return err == nil && st == api.IPFSPinRecursive
	}
	allocated := func(p api.Pin) []int {
		var out []int
		for _, a := range p.Allocations {
			out = append(out, ids[a])
		}
		slices.Sort(out)
		return out
	}
	idx := allocated(pin)
	other := 3 - idx[0] - idx[1]
	waitFor(t, 60*time.Second, "both allocated kubos to pin it", func() bool { return holds(idx[0]) && holds(idx[1]) })
	if holds(other) {
		t.Fatalf("kubo %d pins a CID allocated to %v", other, idx)
	}
	waitFor(t, 30*time.Second, "status [2/2] with two PINNED", func() bool {
		out, err := first.ctl(t, "status", c.String())
		return err == nil && strings.Contains(out, "[2/2]") && strings.Count(out, "PINNED") == 2
	})
	g, err := ps[other].client(t).Status(ctx, c, true)
	if err != nil || g.PeerMap[pidOf(ids, other).String()].Status != api.StatusRemote {
		t.Fatalf("the unallocated peer's own status: %+v, %v; want remote", g, err)
	}

	t.Run("a burst spreads over the peers", func(t *testing.T) {
		used := map[int]int{}
		for i := range 30 {
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
		if len(used) < 3 {
			t.Fatalf("30 pins with one replica each went to %d peer(s): %v", len(used), used)
		}
	})

	victim := idx[0]
	if victim == 0 {
		victim = idx[1] // keep the peer whose API the test uses
	}
	keep := 3 - victim - other
	t.Run("a killed peer's replica is re-created elsewhere", func(t *testing.T) {
		if err := ps[victim].proc.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ps[victim].proc.wait(10 * time.Second)
		start := time.Now()
		waitFor(t, 90*time.Second, "re-allocation to the third peer", func() bool {
			p, err := first.client(t).Allocation(ctx, c)
			return err == nil && slices.Equal(allocated(p), sorted(keep, other))
		})
		waitFor(t, 60*time.Second, "the third kubo to pin it", func() bool { return holds(other) })
		// Exactly one peer re-allocated it: one new version, not one per
		// surviving peer.
		time.Sleep(3 * time.Second)
		for _, i := range []int{keep, other} {
			p, err := ps[i].client(t).Allocation(ctx, c)
			if err != nil || p.Version != pin.Version+1 {
				t.Fatalf("peer %d: version %d after repair (was %d): re-allocated more than once? %v", i, p.Version, pin.Version, err)
			}
		}
		t.Logf("replica restored %s after SIGKILL (metric TTL 3s + grace 2s)", time.Since(start).Round(100*time.Millisecond))
		alerts, err := first.client(t).Alerts(ctx)
		if err != nil || !slices.ContainsFunc(alerts, func(a api.Alert) bool { return ids[a.Peer] == victim }) {
			t.Fatalf("no alert for the killed peer: %+v, %v", alerts, err)
		}
		if out := first.mustCtl(t, "health", "alerts"); !strings.Contains(out, "ping expired") {
			t.Fatalf("health alerts:\n%s", out)
		}
	})

	t.Run("the replaced peer unpins what is no longer its own", func(t *testing.T) {
		if !holds(victim) {
			t.Fatal("the killed peer's kubo should still hold the pin")
		}
		ps[victim].start(t)
		waitFor(t, 60*time.Second, "the returning peer's kubo to unpin", func() bool { return !holds(victim) })
	})

	t.Run("expired pins leave the cluster", func(t *testing.T) {
		ec, err := kuboClient(t, ks[0]).BlockPut(ctx, []byte("short-lived"), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		first.mustCtl(t, "pin", "add", "--expire-in", "2s", ec.String())
		waitFor(t, 60*time.Second, "the expired pin to be gone everywhere", func() bool {
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

func sorted(a, b int) []int {
	s := []int{a, b}
	slices.Sort(s)
	return s
}
