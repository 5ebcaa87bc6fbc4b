package repair

import (
	"testing"
	"time"

	"github.com/pinring/pinring/api"
)

func TestPinsetWatchExpiry(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	expiring := func(at time.Time) *api.Pin {
		return &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, ExpireAt: at}}
	}
	var w Watch
	if !w.ExpiryDue(t0) {
		t.Fatal("before the first walk nothing is known: the pass must walk")
	}
	w.Begin(t0)
	w.ExpiryWalked(t0, time.Time{})
	if w.ExpiryDue(t0.Add(24 * time.Hour)) {
		t.Fatal("a walk found no expiring pin, and none was reported: nothing is due")
	}

	now := t0.Add(10 * time.Minute)
	w.Saw(now, expiring(time.Time{})) // a pin that does not expire
	if w.ExpiryDue(t0.Add(24 * time.Hour)) {
		t.Fatal("a pin without expiry made the pass due")
	}
	w.Saw(now, expiring(t0.Add(time.Hour)))
	w.Saw(now, expiring(t0.Add(2*time.Hour))) // later: the earliest stays
	if w.ExpiryDue(t0.Add(59 * time.Minute)) {
		t.Fatal("due before the earliest expiry")
	}
	if !w.ExpiryDue(t0.Add(time.Hour)) {
		t.Fatal("not due at the earliest expiry")
	}

	// An hour later a walk keeps a pin expiring at +2h (the +1h one was
	// removed); the reports are long past.
	now = t0.Add(time.Hour)
	w.Begin(now)
	w.ExpiryWalked(now, t0.Add(2*time.Hour))
	if w.ExpiryDue(t0.Add(90 * time.Minute)) {
		t.Fatal("the removed pin's expiry still counts after the walk")
	}
	if !w.ExpiryDue(t0.Add(2 * time.Hour)) {
		t.Fatal("the kept pin's expiry was lost")
	}

	// A change reported while a walk reads the pinset, or just before it
	// began (merged, not yet committed), counts even if the walk missed it.
	now = t0.Add(3 * time.Hour)
	w.Saw(now.Add(-10*time.Second), expiring(t0.Add(5*time.Hour)))
	w.Begin(now)
	w.Saw(now.Add(time.Second), expiring(t0.Add(4*time.Hour)))
	w.ExpiryWalked(now.Add(2*time.Second), time.Time{})
	if !w.ExpiryDue(t0.Add(4 * time.Hour)) {
		t.Fatal("an expiry reported during the walk was lost")
	}
	now = t0.Add(4 * time.Hour)
	w.Begin(now)
	w.Saw(now.Add(-3*time.Second), expiring(t0.Add(6*time.Hour)))
	w.ExpiryWalked(now, time.Time{})
	if !w.ExpiryDue(t0.Add(6 * time.Hour)) {
		t.Fatal("an expiry reported just before the walk was lost")
	}
	// Reported long before a walk began: the walk's to find.
	now = t0.Add(7 * time.Hour)
	w.Begin(now)
	w.ExpiryWalked(now, time.Time{})
	if w.ExpiryDue(t0.Add(48 * time.Hour)) {
		t.Fatal("an expiry the walk did not find is still due")
	}
	if len(w.recent) != 0 {
		t.Fatalf("%d buckets of old reports kept", len(w.recent))
	}
	if !w.RepairDue() {
		t.Fatal("the repair pass has not walked yet: it must be due")
	}
}

func TestPinsetWatchRepair(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	everywhere := &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
	twice := &api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}}
	shard := &api.Pin{Type: api.ShardType, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
	var w Watch
	if !w.RepairDue() {
		t.Fatal("before the first walk nothing is known: the pass must walk")
	}
	w.Begin(t0)
	w.RepairWalked(t0, false)
	if w.RepairDue() {
		t.Fatal("a walk found only pins on every peer: nothing to repair")
	}
	w.Saw(t0, everywhere)
	w.Saw(t0, shard) // erasure-coded shards are repaired apart
	if w.RepairDue() {
		t.Fatal("a pin on every peer, or a shard, made the repair pass due")
	}
	w.Saw(t0, twice)
	if !w.RepairDue() {
		t.Fatal("a pin with two replicas did not make the repair pass due")
	}
	// Ten minutes later a walk finds it gone.
	now := t0.Add(10 * time.Minute)
	w.Begin(now)
	w.RepairWalked(now, false)
	if w.RepairDue() {
		t.Fatal("still due after a walk found no allocated pin")
	}
	// Written just before a walk began, not yet visible to it.
	now = t0.Add(20 * time.Minute)
	w.Saw(now.Add(-time.Second), twice)
	w.Begin(now)
	w.RepairWalked(now, false)
	if !w.RepairDue() {
		t.Fatal("a pin written just before the walk was lost")
	}
	now = t0.Add(30 * time.Minute)
	w.Begin(now)
	w.RepairWalked(now, true)
	if !w.RepairDue() {
		t.Fatal("the walk found an allocated pin, but the pass is not due")
	}
	if !w.ExpiryDue(now) {
		t.Fatal("the expiry pass has not walked yet: it must be due")
	}
}
