package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// Two writer processes on real kubos, compaction on with a low threshold.
// While one writer keeps pinning and unpinning, the other is SIGKILLed the
// moment it logs that it starts a new epoch (its copy under way) — or, if
// the first to start one is the busy writer, that one is. It restarts;
// the two end in one epoch with equal digests, every acknowledged pin
// there and every acknowledged removal gone.
func TestSIGKILLDuringACompaction(t *testing.T) {
	ctx := context.Background()
	ks := []*kuboNode{startKubo(t), startKubo(t)}
	env := []string{
		"PINRING_STATE_COMPACT_CHECK=300ms", "PINRING_STATE_COMPACT_RATIO=1", "PINRING_STATE_COMPACT_FLOOR=300",
		"PINRING_MONITOR_INTERVAL=500ms", "PINRING_REPAIR_GRACE=1s",
	}
	a := newPeerEnv(t, ks[0], env)
	a.start(t)
	b := newPeerEnv(t, ks[1], append(a.writerEnv(t), env...), "--join", loopbackP2P(t, a))
	b.start(t)
	ps := []*peerNode{a, b}

	var (
		mu      sync.Mutex
		live    = map[api.Cid]bool{} // acknowledged state of each CID written
		written []api.Cid
	)
	kubo := kuboClient(t, ks[0])
	next := 0
	fresh := func() api.Cid {
		t.Helper()
		c, err := kubo.BlockPut(ctx, fmt.Appendf(nil, "epoch kill %d", next), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		next++
		return c
	}
	acl := a.client(t)
	for range 400 {
		c := fresh()
		if _, err := acl.Pin(ctx, c, api.PinOptions{}); err != nil {
			t.Fatal(err)
		}
		live[c], written = true, append(written, c)
	}
	testkit.WaitFor(t, 60*time.Second, "both hold the first 400 pins", func() bool { return converged(t, 400, ps...) })

	// The busy writer: unpins and pins again, and adds new pins, until
	// told to stop; it records what was acknowledged.
	busy := a
	uncertain := map[api.Cid]bool{} // a request that failed may still have landed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		cl := busy.client(t)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			c := written[i%len(written)]
			was := live[c]
			mu.Unlock()
			var err error
			if was {
				_, err = cl.Unpin(ctx, c)
			} else {
				_, err = cl.Pin(ctx, c, api.PinOptions{})
			}
			if err != nil { // not acknowledged (the peer may be the one killed)
				// Refused: never sent. Anything else (cut by the
				// kill, or answered with an error) may have landed.
				if !strings.Contains(err.Error(), "connection refused") {
					mu.Lock()
					uncertain[c] = true
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			mu.Lock()
			live[c] = !was
			mu.Unlock()
		}
	})
	// killAt SIGKILLs whichever writer first logs what (after what they
	// logged so far), and starts it again once the other has gone on
	// alone for a while.
	killAt := func(what string) (restarted *peerNode, dropped bool) {
		t.Helper()
		from := map[*peerNode]int{}
		for _, p := range ps {
			from[p] = len(p.proc.log.String())
		}
		var killed *peerNode
		testkit.WaitFor(t, 2*time.Minute, "a writer to log "+what, func() bool {
			for _, p := range ps {
				if strings.Contains(p.proc.log.String()[from[p]:], what) {
					killed = p
					return true
				}
			}
			return false
		})
		if err := killed.proc.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed.proc.wait(10 * time.Second)
		log := killed.proc.log.String()[from[killed]:]
		i := strings.Index(log, what)
		t.Logf("SIGKILLed the %s writer at %q; what it logged of epochs after that: %q", map[bool]string{true: "busy", false: "idle"}[killed == busy],
			what, epochLines(log[i+len(what):]))
		time.Sleep(2 * time.Second) // the survivor goes on alone
		killed.start(t)
		time.Sleep(2 * time.Second)
		return killed, strings.Contains(log[i:], " dropped")
	}
	// In the middle of a maker's copy; then between a switch and the drop
	// of the old epoch (retire waits 2 s for reads under way): the next
	// start finishes that retirement.
	killAt("starting epoch ")
	if p, dropped := killAt("now in epoch "); !dropped {
		// Killed between the switch and the drop: its start retires
		// the epoch it left (retireOlder).
		testkit.WaitFor(t, 30*time.Second, "the restarted writer to drop the epoch it had left", func() bool {
			return strings.Contains(p.proc.log.String(), " dropped")
		})
	}
	close(stop)
	wg.Wait()

	testkit.WaitFor(t, 3*time.Minute, "both in one epoch after 0, with equal digests", func() bool {
		var epochs []uint64
		for _, p := range ps {
			h, err := p.client(t).Health(ctx)
			if err != nil {
				return false
			}
			epochs = append(epochs, h.Store.Epoch)
		}
		ds := digests(t, ps...)
		return epochs[0] >= 1 && epochs[0] == epochs[1] && ds[0] == ds[1]
	})
	checked := 0
	for _, p := range ps {
		cl := p.client(t)
		for c, l := range live {
			if uncertain[c] {
				continue
			}
			checked++
			_, err := cl.Allocation(ctx, c)
			if l && err != nil {
				t.Fatalf("%s: acknowledged pin %s is missing: %v", p.api, c, err)
			}
			if !l && err == nil {
				t.Fatalf("%s: pin %s, acknowledged removed, is back", p.api, c)
			}
		}
	}
	t.Logf("%d pins and removals checked at both writers (%d uncertain: a request cut by the kill)", checked/2, len(uncertain))
}

// epochLines are the lines of log about epochs.
func epochLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "epoch") {
			if i := strings.Index(l, "peer/epoch.go"); i >= 0 {
				l = l[i:]
			}
			out = append(out, l)
		}
	}
	return out
}
