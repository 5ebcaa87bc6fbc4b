package peer

import (
	"sync"
	"time"
)

// expiryWatch knows when the pinset's next pin expires, so that the expiry
// pass walks the pinset only when there may be something to remove. Every
// pinset change passes through onChange (local writes and merged remote
// ones), which reports the new record's expiry; a walk finds the exact
// earliest expiry of the pins it leaves in place. Until the first walk
// nothing is known (pins written before the peer started, or loaded from
// a snapshot, were never reported), so the first pass always walks.
//
// The earliest expiry only ever moves later after a walk: a pin removed,
// or re-pinned with a later expiry, can cost an extra walk, never a missed
// one.
type expiryWatch struct {
	mu   sync.Mutex
	next time.Time // earliest expiry known; zero: no pin expires
	// since is the earliest expiry reported since the current walk began
	// (the walk may have read the pinset before that change).
	since time.Time
	known bool // a walk has completed
}

// earliest is the earlier of two expiries, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// saw records a pin record's expiry (zero: it does not expire).
func (w *expiryWatch) saw(at time.Time) {
	if at.IsZero() {
		return
	}
	w.mu.Lock()
	w.next = earliest(w.next, at)
	w.since = earliest(w.since, at)
	w.mu.Unlock()
}

// due tells whether a pin may have expired by now.
func (w *expiryWatch) due(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.known || (!w.next.IsZero() && !now.Before(w.next))
}

// begin is called before a walk reads the pinset.
func (w *expiryWatch) begin() {
	w.mu.Lock()
	w.since = time.Time{}
	w.mu.Unlock()
}

// walked is called after a walk that left soonest as the earliest expiry
// of the pins it kept.
func (w *expiryWatch) walked(soonest time.Time) {
	w.mu.Lock()
	w.next = earliest(soonest, w.since)
	w.known = true
	w.mu.Unlock()
}
