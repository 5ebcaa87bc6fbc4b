package repair

import (
	"context"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/pubsubmon"
)

// fakeClock is shared by every monitor of a test: metrics expire only
// when the test advances it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type monPeer struct {
	id   peer.ID
	mon  *pubsubmon.Monitor
	stop context.CancelFunc

	mu     sync.Mutex
	alerts []api.Alert
}

// TestRepairIsDoneOnceAfterGrace runs 4 monitors on a mocknet with a fake
// clock. When one peer stops, the others raise an alert once its metrics
// expire, declare it dead only after the grace period, and then each pin it
// held is claimed for repair by exactly one survivor.
func TestRepairIsDoneOnceAfterGrace(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := pubsubmon.DefaultConfig()
	cfg.Interval = config.Duration(100 * time.Millisecond) // real publishing pace
	ttl := cfg.TTL()
	const grace = 2 * time.Second
	var ps []*monPeer
	for range 4 {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		gs, err := pubsub.NewGossipSub(ctx, h, pubsub.WithStrictSignatureVerification(true), pubsub.WithFloodPublish(true))
		if err != nil {
			t.Fatal(err)
		}
		mp := &monPeer{id: h.ID(), stop: cancel}
		mp.mon, err = pubsubmon.New(ctx, cfg, pubsubmon.Deps{PubSub: gs, Topic: "/pinring/test/metrics", Self: h.ID(),
			Collect: func(context.Context) []api.Metric { return nil }, Now: clock.Now,
			OnAlert: func(a api.Alert) { mp.mu.Lock(); mp.alerts = append(mp.alerts, a); mp.mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); mp.mon.Close() })
		ps = append(ps, mp)
	}
	mn.LinkAll()
	mn.ConnectAllButSelf()
	testkit.WaitFor(t, 10*time.Second, "every monitor sees 4 live peers", func() bool {
		for _, p := range ps {
			if len(p.mon.LatestValid(pubsubmon.MetricPing)) != 4 {
				return false
			}
		}
		return true
	})

	// 60 pins, two replicas each, spread over the 4 peers.
	var pins []api.Pin
	for i := range 60 {
		pin := api.Pin{Cid: testkit.Cid(i), PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}}
		pin.Allocations = []peer.ID{ps[i%4].id, ps[(i+1+i/4)%4].id}
		if pin.Allocations[0] == pin.Allocations[1] {
			pin.Allocations[1] = ps[(i+2)%4].id
		}
		pins = append(pins, pin)
	}

	victim, survivors := ps[3], ps[:3]
	// Time moves in steps of a third of the TTL, each long enough (in real
	// time) for the live peers to publish a fresh heartbeat, as they would.
	advance := func(d time.Duration) {
		for step := ttl / 3; d > 0; d -= step {
			clock.Advance(min(step, d))
			time.Sleep(150 * time.Millisecond)
		}
	}
	victim.stop()
	time.Sleep(300 * time.Millisecond) // its last heartbeats land
	advance(ttl + 200*time.Millisecond)
	testkit.WaitFor(t, 10*time.Second, "an alert for the stopped peer at every survivor", func() bool {
		for _, p := range survivors {
			p.mu.Lock()
			n := len(p.alerts)
			p.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	for _, p := range survivors {
		if d := p.mon.Dead(grace); len(d) != 0 {
			t.Fatalf("dead within the grace period: %v (a blink must not move pins)", d)
		}
	}
	advance(grace)
	claims := map[string]int{}
	for _, p := range survivors {
		dead := p.mon.Dead(grace)
		if len(dead) != 1 || !dead[victim.id] {
			t.Fatalf("survivor %s sees dead %v, want only the victim", p.id, dead)
		}
		p.mu.Lock()
		if len(p.alerts) != 1 || p.alerts[0].Peer != victim.id {
			t.Fatalf("survivor %s alerts %+v, want one for the victim", p.id, p.alerts)
		}
		p.mu.Unlock()
		var live []peer.ID
		for _, m := range p.mon.LatestValid(pubsubmon.MetricPing) {
			live = append(live, m.Peer)
		}
		for i := range pins {
			if NeedsRepair(&pins[i], dead, 3) && InCharge(p.id, pins[i].Cid.Key(), live) {
				claims[pins[i].Cid.Key()]++
			}
		}
	}
	for _, pin := range pins {
		held := pin.Allocations[0] == victim.id || pin.Allocations[1] == victim.id
		switch n := claims[pin.Cid.Key()]; {
		case held && n != 1:
			t.Fatalf("pin %s held by the victim claimed by %d survivors, want exactly 1", pin.Cid, n)
		case !held && n != 0:
			t.Fatalf("pin %s not held by the victim claimed %d times", pin.Cid, n)
		}
	}
}
