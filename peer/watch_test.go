package peer

import (
	"context"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

func TestPinsetWatchExpiry(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	expiring := func(at time.Time) *api.Pin {
		return &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, ExpireAt: at}}
	}
	var w pinsetWatch
	if !w.expiryDue(t0) {
		t.Fatal("before the first walk nothing is known: the pass must walk")
	}
	w.begin(t0)
	w.expiryWalked(t0, time.Time{})
	if w.expiryDue(t0.Add(24 * time.Hour)) {
		t.Fatal("a walk found no expiring pin, and none was reported: nothing is due")
	}

	now := t0.Add(10 * time.Minute)
	w.sawAt(now, expiring(time.Time{})) // a pin that does not expire
	if w.expiryDue(t0.Add(24 * time.Hour)) {
		t.Fatal("a pin without expiry made the pass due")
	}
	w.sawAt(now, expiring(t0.Add(time.Hour)))
	w.sawAt(now, expiring(t0.Add(2*time.Hour))) // later: the earliest stays
	if w.expiryDue(t0.Add(59 * time.Minute)) {
		t.Fatal("due before the earliest expiry")
	}
	if !w.expiryDue(t0.Add(time.Hour)) {
		t.Fatal("not due at the earliest expiry")
	}

	// An hour later a walk keeps a pin expiring at +2h (the +1h one was
	// removed); the reports are long past.
	now = t0.Add(time.Hour)
	w.begin(now)
	w.expiryWalked(now, t0.Add(2*time.Hour))
	if w.expiryDue(t0.Add(90 * time.Minute)) {
		t.Fatal("the removed pin's expiry still counts after the walk")
	}
	if !w.expiryDue(t0.Add(2 * time.Hour)) {
		t.Fatal("the kept pin's expiry was lost")
	}

	// A change reported while a walk reads the pinset, or just before it
	// began (merged, not yet committed), counts even if the walk missed it.
	now = t0.Add(3 * time.Hour)
	w.sawAt(now.Add(-10*time.Second), expiring(t0.Add(5*time.Hour)))
	w.begin(now)
	w.sawAt(now.Add(time.Second), expiring(t0.Add(4*time.Hour)))
	w.expiryWalked(now.Add(2*time.Second), time.Time{})
	if !w.expiryDue(t0.Add(4 * time.Hour)) {
		t.Fatal("an expiry reported during the walk was lost")
	}
	now = t0.Add(4 * time.Hour)
	w.begin(now)
	w.sawAt(now.Add(-3*time.Second), expiring(t0.Add(6*time.Hour)))
	w.expiryWalked(now, time.Time{})
	if !w.expiryDue(t0.Add(6 * time.Hour)) {
		t.Fatal("an expiry reported just before the walk was lost")
	}
	// Reported long before a walk began: the walk's to find.
	now = t0.Add(7 * time.Hour)
	w.begin(now)
	w.expiryWalked(now, time.Time{})
	if w.expiryDue(t0.Add(48 * time.Hour)) {
		t.Fatal("an expiry the walk did not find is still due")
	}
	if len(w.recent) != 0 {
		t.Fatalf("%d buckets of old reports kept", len(w.recent))
	}
	if !w.repairDue() {
		t.Fatal("the repair pass has not walked yet: it must be due")
	}
}

func TestPinsetWatchRepair(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	everywhere := &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
	twice := &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}}
	shard := &api.Pin{Type: api.ShardType, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
	var w pinsetWatch
	if !w.repairDue() {
		t.Fatal("before the first walk nothing is known: the pass must walk")
	}
	w.begin(t0)
	w.repairWalked(t0, false)
	if w.repairDue() {
		t.Fatal("a walk found only pins on every peer: nothing to repair")
	}
	w.sawAt(t0, everywhere)
	w.sawAt(t0, shard) // erasure-coded shards are repaired apart
	if w.repairDue() {
		t.Fatal("a pin on every peer, or a shard, made the repair pass due")
	}
	w.sawAt(t0, twice)
	if !w.repairDue() {
		t.Fatal("a pin with two replicas did not make the repair pass due")
	}
	// Ten minutes later a walk finds it gone.
	now := t0.Add(10 * time.Minute)
	w.begin(now)
	w.repairWalked(now, false)
	if w.repairDue() {
		t.Fatal("still due after a walk found no allocated pin")
	}
	// Written just before a walk began, not yet visible to it.
	now = t0.Add(20 * time.Minute)
	w.sawAt(now.Add(-time.Second), twice)
	w.begin(now)
	w.repairWalked(now, false)
	if !w.repairDue() {
		t.Fatal("a pin written just before the walk was lost")
	}
	now = t0.Add(30 * time.Minute)
	w.begin(now)
	w.repairWalked(now, true)
	if !w.repairDue() {
		t.Fatal("the walk found an allocated pin, but the pass is not due")
	}
	if !w.expiryDue(now) {
		t.Fatal("the expiry pass has not walked yet: it must be due")
	}
}

// A pin written with an expiry before a restart expires after it: the
// restarted peer was never told of it (no change passed through onChange),
// so only its survey of the pinset knows the pass is due.
func TestRestartedPeerExpiresPinsItHeld(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	cfg, dir := clusterPeerConfig(t, "expiry", key, nil, func(c *Config) {
		c.Repair.ExpiryInterval = config.Duration(100 * time.Millisecond)
	})
	p, err := New(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	keep, gone := benchCid(1), benchCid(2)
	if _, err := p.Pin(ctx, api.Pin{Cid: keep, Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(2 * time.Second)
	if _, err := p.Pin(ctx, api.Pin{Cid: gone, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{ExpireAt: at}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = New(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := at.Add(30 * time.Second)
	for {
		if _, err := p.PinGet(ctx, gone); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pin that expired at %s is still there after the restart", at.Format(time.TimeOnly))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Now().Before(at) {
		t.Fatal("the pin was removed before it expired")
	}
	if _, err := p.PinGet(ctx, keep); err != nil {
		t.Fatalf("the pin without expiry: %s", err)
	}
}
