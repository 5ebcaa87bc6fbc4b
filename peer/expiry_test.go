package peer

import (
	"testing"
	"time"
)

func TestExpiryWatch(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	var w expiryWatch
	if !w.due(t0) {
		t.Fatal("before the first walk nothing is known: the pass must walk")
	}
	w.begin()
	w.walked(time.Time{})
	if w.due(t0.Add(24 * time.Hour)) {
		t.Fatal("a walk found no expiring pin, and none was reported since: nothing is due")
	}

	w.saw(time.Time{}) // a pin that does not expire
	if w.due(t0.Add(24 * time.Hour)) {
		t.Fatal("a pin without expiry made the pass due")
	}
	w.saw(t0.Add(time.Hour))
	w.saw(t0.Add(2 * time.Hour)) // later: the earliest stays
	if w.due(t0.Add(59 * time.Minute)) {
		t.Fatal("due before the earliest expiry")
	}
	if !w.due(t0.Add(time.Hour)) {
		t.Fatal("not due at the earliest expiry")
	}

	// A walk that kept a pin expiring at +2h (the +1h one was removed).
	w.begin()
	w.walked(t0.Add(2 * time.Hour))
	if w.due(t0.Add(90 * time.Minute)) {
		t.Fatal("the removed pin's expiry still counts after the walk")
	}
	if !w.due(t0.Add(2 * time.Hour)) {
		t.Fatal("the kept pin's expiry was lost")
	}

	// A change reported while a walk reads the pinset counts even if the
	// walk did not see it.
	w.begin()
	w.saw(t0.Add(30 * time.Minute))
	w.walked(time.Time{})
	if !w.due(t0.Add(30 * time.Minute)) {
		t.Fatal("an expiry reported during the walk was lost")
	}
	// One reported before the walk began is the walk's to find.
	w.saw(t0.Add(10 * time.Minute))
	w.begin()
	w.walked(time.Time{})
	if w.due(t0.Add(48 * time.Hour)) {
		t.Fatal("an expiry the walk did not find is still due")
	}
}
