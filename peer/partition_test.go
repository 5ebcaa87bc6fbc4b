package peer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/trust"
)

// onMocknet makes the peers this test starts run on mn, each linked to
// those before it.
func onMocknet(t *testing.T) mocknet.Mocknet {
	mn := mocknet.New()
	n := 0
	testHost = func(sk crypto.PrivKey) (host.Host, error) {
		n++
		h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/10.9.0.%d/tcp/4001", n)))
		if err != nil {
			return nil, err
		}
		return h, mn.LinkAll()
	}
	t.Cleanup(func() {
		testHost = nil
		mn.Close()
	})
	return mn
}

// split cuts (or, with heal, restores) every link between the peers of
// side and other.
func split(t *testing.T, mn mocknet.Mocknet, side, other []*Peer, heal bool) {
	t.Helper()
	for _, x := range side {
		for _, y := range other {
			var err error
			if heal {
				if _, err = mn.LinkPeers(x.host.ID(), y.host.ID()); err == nil {
					_, err = mn.ConnectPeers(x.host.ID(), y.host.ID())
				}
			} else if err = mn.UnlinkPeers(x.host.ID(), y.host.ID()); err == nil {
				// Both ends: closing one end alone can leave the other's
				// streams delivering.
				err = errors.Join(mn.DisconnectPeers(x.host.ID(), y.host.ID()), mn.DisconnectPeers(y.host.ID(), x.host.ID()))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Three writers and a follower on a mocknet; the network splits into
// {a, b, f} and {c}, and both sides write: new pins, removals, updates,
// churn that takes each side's history over the threshold. The side with
// two of the three writers starts epoch 1 on its own; c, alone, does not.
// When the split heals c switches to epoch 1 and carries its late writes
// over; every peer then holds the same pinset — every acknowledged pin,
// none that either side removed — and follows a second epoch too.
func TestASplitAcrossAnEpoch(t *testing.T) {
	ctx := context.Background()
	mn := onMocknet(t)
	key := newWriteKey(t)
	trusted := []trust.PublicKey{key.Public()}
	fast := compactingFast(1, 20)
	a := startClusterPeerWith(t, "ring", key, trusted, fast)
	boot := a.P2PAddrs()[0].String()
	b := startClusterPeerWith(t, "ring", key, trusted, fast, boot)
	c := startClusterPeerWith(t, "ring", key, trusted, fast, boot)
	f := startClusterPeerWith(t, "ring", nil, trusted, fast, boot)
	all := []*Peer{a, b, c, f}
	named := func(i int, name string) api.Pin {
		p := dataPin(i)
		p.Name = name
		return p
	}
	pin := func(p *Peer, pins ...api.Pin) {
		t.Helper()
		for _, x := range pins {
			if _, err := p.Pin(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	unpin := func(p *Peer, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := p.Unpin(ctx, testkit.Cid(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	span := func(from, to int, name string) []api.Pin {
		var out []api.Pin
		for i := from; i < to; i++ {
			out = append(out, named(i, name))
		}
		return out
	}
	// churn unpins and pins again [from, to) rounds times, each change
	// packed apart.
	churn := func(p *Peer, from, to, rounds int) {
		t.Helper()
		for range rounds {
			unpin(p, from, to)
			p.st().Flush(ctx)
			pin(p, span(from, to, "")...)
			p.st().Flush(ctx)
		}
	}
	pin(a, span(0, 100, "")...)
	sameDigest(t, "all four hold the first pins", 100, all...)
	testkit.WaitFor(t, 30*time.Second, "every writer to see the three live", func() bool {
		return len(a.liveTrusted()) == 3 && len(b.liveTrusted()) == 3 && len(c.liveTrusted()) == 3
	})
	if epochOf(a) != 0 {
		t.Fatalf("epoch %d before any churn", epochOf(a))
	}

	split(t, mn, []*Peer{a, b, f}, []*Peer{c}, false)
	apart := func() bool {
		return !slices.Contains(a.liveTrusted(), c.host.ID()) && !slices.Contains(b.liveTrusted(), c.host.ID()) &&
			len(c.liveTrusted()) == 1
	}
	for end := time.Now().Add(15 * time.Second); !apart(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			if len(mn.Net(c.host.ID()).Conns()) == 0 && len(c.node.PubSub.ListPeers("")) > 0 {
				// Seen about once in fifteen runs: a stream of a closed
				// mock connection goes on delivering, so c is not cut
				// off at all and the scenario cannot be played.
				t.Skipf("mocknet left c's gossipsub with peers %v and no connection: no split to test", c.node.PubSub.ListPeers(""))
			}
			t.Fatalf("each side still sees the other: a %v, b %v, c %v (c is %s)",
				a.liveTrusted(), b.liveTrusted(), c.liveTrusted(), c.host.ID())
		}
	}
	// Side a: removes 0–29, adds 200–249, renames 30–39, churns 70–99.
	// Side c: removes 40–49, adds 300–329 and churns them.
	unpin(a, 0, 30)
	pin(a, span(200, 250, "")...)
	pin(a, span(30, 40, "a-side")...)
	churn(a, 70, 100, 2)
	unpin(c, 40, 50)
	pin(c, span(300, 330, "")...)
	churn(c, 300, 330, 3)
	testkit.WaitFor(t, time.Minute, "side a, b and f to move to epoch 1", func() bool {
		return epochOf(a) == 1 && epochOf(b) == 1 && epochOf(f) == 1
	})
	time.Sleep(time.Second) // ten of c's checks
	if epochOf(c) != 0 {
		t.Fatalf("c, alone of three writers, started epoch %d", epochOf(c))
	}
	if h := c.history.Load(); h == nil || h.Elements+h.Tombstones <= h.Live+20 {
		t.Fatalf("c's history %+v is not over its threshold: its staying in epoch 0 proves nothing", h)
	}

	split(t, mn, []*Peer{a, b, f}, []*Peer{c}, true)
	testkit.WaitFor(t, time.Minute, "c to move to epoch 1", func() bool { return epochOf(c) >= 1 })
	// 30–39 renamed, 50–99, 200–249, 300–329.
	const want = 10 + 50 + 50 + 30
	agreed := func(what string) {
		t.Helper()
		end := time.Now().Add(time.Minute)
		for time.Now().Before(end) {
			d0, _ := a.Digest(ctx)
			ok := d0.Pins == want
			for _, p := range all[1:] {
				if d, _ := p.Digest(ctx); d != d0 {
					ok = false
				}
			}
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, p := range all {
			d, _ := p.Digest(ctx)
			var odd []int
			for i := range 330 {
				_, err := p.PinGet(ctx, testkit.Cid(i))
				live := i >= 30 && i < 40 || i >= 50 && i < 100 || i >= 200 && i < 250 || i >= 300
				if live != (err == nil) {
					odd = append(odd, i)
				}
			}
			t.Logf("%s: epoch %d, %d pins, unexpected: %v", p.host.ID(), epochOf(p), d.Pins, odd)
		}
		t.Fatalf("%s: the four do not agree on %d pins", what, want)
	}
	agreed("after the split")
	// check waits until every peer holds what was acknowledged: a peer
	// that has just switched lacks, for a moment, the late writes their
	// writer has not carried over yet.
	check := func() {
		t.Helper()
		wrong := func() string {
			for _, p := range all {
				for i := range 330 {
					got, err := p.PinGet(ctx, testkit.Cid(i))
					live := i >= 30 && i < 40 || i >= 50 && i < 100 || i >= 200 && i < 250 || i >= 300
					switch {
					case live && err != nil:
						return fmt.Sprintf("%s (epoch %d): acknowledged pin %d is missing: %v", p.host.ID(), epochOf(p), i, err)
					case !live && err == nil:
						return fmt.Sprintf("%s (epoch %d): pin %d, removed or never written, is there", p.host.ID(), epochOf(p), i)
					case i >= 30 && i < 40 && got.Name != "a-side":
						return fmt.Sprintf("%s (epoch %d): pin %d named %q, want a-side", p.host.ID(), epochOf(p), i, got.Name)
					}
				}
			}
			return ""
		}
		end := time.Now().Add(time.Minute)
		for w := wrong(); w != ""; w = wrong() {
			if time.Now().After(end) {
				t.Fatal(w)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	check()

	// Together again, a later epoch (or two): every peer follows.
	churn(c, 300, 330, 3)
	testkit.WaitFor(t, time.Minute, "all four in one epoch after 1", func() bool {
		for _, p := range all {
			if epochOf(p) < 2 || epochOf(p) != epochOf(a) {
				return false
			}
		}
		return true
	})
	agreed("in the later epoch")
	check()
}
