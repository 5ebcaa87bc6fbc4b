package peer

import (
	"sync"
	"time"

	"github.com/pinring/pinring/api"
)

// pinsetWatch knows, without walking the pinset, whether the expiry pass
// or the repair pass may have work: when the next pin expires, and whether
// any pin has a finite replication factor (a pin on every peer is never
// repaired or moved). A walk of a million pins costs seconds of CPU, and
// most pinsets hold no expiring pin, many only pins on every peer.
//
// Every pinset change passes through onChange (local writes and merged
// remote ones), which reports the new record; each pass's walk finds the
// exact answer for the pins it keeps. Pins written before the peer
// started, or loaded from a snapshot, were never reported: the repair loop
// surveys the pinset once when it starts, and until a walk has completed
// both passes walk. The
// answers only move the safe way between walks (an earlier expiry, "some
// pin is allocated"): a pin removed or changed can cost an extra walk,
// never a missed one.
type pinsetWatch struct {
	mu sync.Mutex
	// next is the earliest expiry known (zero: no pin expires); nextSince
	// the earliest reported since the current expiry walk began (that walk
	// may have read the pinset before the change).
	next, nextSince time.Time
	expiryKnown     bool
	// allocated: some pin may have a finite replication factor;
	// allocatedSince: one was reported since the current repair walk began.
	allocated, allocatedSince bool
	allocatedKnown            bool
}

// earliest is the earlier of two expiries, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// repairable tells whether the repair pass can act on pin: one with a
// finite replication factor (erasure-coded files' shard and meta pins are
// repaired apart).
func repairable(pin *api.Pin) bool {
	return pin.ReplicationFactorMax != -1 && pin.Type != api.ShardType && pin.Type != api.MetaType
}

// saw records a pin record as written (added or updated).
func (w *pinsetWatch) saw(pin *api.Pin) {
	exp, alloc := pin.ExpireAt, repairable(pin)
	if exp.IsZero() && !alloc {
		return
	}
	w.mu.Lock()
	if !exp.IsZero() {
		w.next, w.nextSince = earliest(w.next, exp), earliest(w.nextSince, exp)
	}
	if alloc {
		w.allocated, w.allocatedSince = true, true
	}
	w.mu.Unlock()
}

// expiryDue tells whether a pin may have expired by now.
func (w *pinsetWatch) expiryDue(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.expiryKnown || (!w.next.IsZero() && !now.Before(w.next))
}

// expiryBegin is called before the expiry pass reads the pinset.
func (w *pinsetWatch) expiryBegin() {
	w.mu.Lock()
	w.nextSince = time.Time{}
	w.mu.Unlock()
}

// expiryWalked is called after an expiry walk that left soonest as the
// earliest expiry of the pins it kept.
func (w *pinsetWatch) expiryWalked(soonest time.Time) {
	w.mu.Lock()
	w.next, w.expiryKnown = earliest(soonest, w.nextSince), true
	w.mu.Unlock()
}

// repairDue tells whether some pin may be one the repair pass acts on.
func (w *pinsetWatch) repairDue() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.allocatedKnown || w.allocated
}

// repairBegin is called before the repair pass reads the pinset.
func (w *pinsetWatch) repairBegin() {
	w.mu.Lock()
	w.allocatedSince = false
	w.mu.Unlock()
}

// repairWalked is called after a repair walk that found (or not) a pin it
// could act on.
func (w *pinsetWatch) repairWalked(found bool) {
	w.mu.Lock()
	w.allocated, w.allocatedKnown = found || w.allocatedSince, true
	w.mu.Unlock()
}
