// Package repair decides, without side effects, what the repair, rebalance
// and expiry passes do: which pins move off dead or full peers, which
// expired pins go, and which peer acts on each (no leader: every peer
// computes the same answer from the same heartbeats). The peer runs the
// passes; everything here takes the time and the ring's state as
// arguments, so it is tested with any clock.
package repair

import (
	"sync"
	"time"

	"github.com/pinring/pinring/api"
)

// Watch knows, without walking the pinset, whether the expiry pass
// or the repair pass may have work: when the next pin expires, and whether
// any pin has a finite replication factor (a pin on every peer is never
// repaired or moved). A walk reads every pin, and most pinsets hold no
// expiring pin, many only pins on every peer.
//
// Every pinset change passes through the peer's onChange (local writes and
// merged remote ones), which reports the new record (Saw); each pass's walk finds the
// exact answer for the pins it reads. Pins written before the peer
// started, or loaded from a snapshot, were never reported: the repair loop
// surveys the pinset once when it starts, and until a walk has completed
// both passes walk.
//
// A walk may miss a change reported just before it began: go-ds-crdt
// reports a merged change before it commits the batch holding it. So a
// walk's answer is merged with every report made from reportMargin before
// it began (kept in buckets of a minute). The answers only move the safe
// way between walks (an earlier expiry, "some pin is allocated"): a pin
// removed or changed can cost an extra walk, never a missed one.
type Watch struct {
	mu sync.Mutex
	// next is the Earliest expiry known (zero: no pin expires);
	// allocated, whether some pin may have a finite replication factor.
	next                        time.Time
	allocated                   bool
	expiryKnown, allocatedKnown bool
	recent                      map[int64]report // by the minute (Unix) they were made in
	began                       time.Time        // of the walk under way; zero: none
}

// reportMargin is far longer than go-ds-crdt takes from reporting a merged
// change to committing it.
const reportMargin = time.Minute

type report struct {
	expiry    time.Time // Earliest reported; zero: none
	allocated bool
}

// Earliest is the earlier of two expiries, zero meaning none.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func minute(t time.Time) int64 { return t.Unix() / 60 }

// Repairable tells whether the repair pass can act on pin: one with a
// finite replication factor (erasure-coded files' shard and meta pins are
// repaired apart).
func Repairable(pin *api.Pin) bool {
	return pin.ReplicationFactorMax != -1 && pin.Type != api.ShardType && pin.Type != api.MetaType
}

// Saw records a pin record as written (added or updated) at now.
func (w *Watch) Saw(now time.Time, pin *api.Pin) {
	exp, alloc := pin.ExpireAt, Repairable(pin)
	if exp.IsZero() && !alloc {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = Earliest(w.next, exp)
	w.allocated = w.allocated || alloc
	if w.recent == nil {
		w.recent = map[int64]report{}
	}
	k := minute(now)
	r := w.recent[k]
	w.recent[k] = report{expiry: Earliest(r.expiry, exp), allocated: r.allocated || alloc}
	w.prune(now)
}

// prune drops the reports no walk can miss any more: older than
// reportMargin before now, or before the walk under way began. w.mu held.
func (w *Watch) prune(now time.Time) {
	from := now
	if !w.began.IsZero() && w.began.Before(from) {
		from = w.began
	}
	cut := minute(from.Add(-reportMargin))
	for k := range w.recent {
		if k < cut {
			delete(w.recent, k)
		}
	}
}

// missed is what was reported from reportMargin before the walk under way
// began (every report it may have missed, and perhaps a few it read). w.mu
// held.
func (w *Watch) missed() report {
	var out report
	cut := minute(w.began.Add(-reportMargin))
	for k, r := range w.recent {
		if k >= cut {
			out = report{expiry: Earliest(out.expiry, r.expiry), allocated: out.allocated || r.allocated}
		}
	}
	return out
}

// Begin is called before a walk reads the pinset (one walk at a time: the
// repair loop makes them all).
func (w *Watch) Begin(now time.Time) {
	w.mu.Lock()
	w.began = now
	w.mu.Unlock()
}

// ended closes the walk under way, for either pass. w.mu held.
func (w *Watch) ended(now time.Time) {
	w.began = time.Time{}
	w.prune(now)
}

// ExpiryDue tells whether a pin may have expired by now.
func (w *Watch) ExpiryDue(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.expiryKnown || (!w.next.IsZero() && !now.Before(w.next))
}

// ExpiryWalked is called after an expiry walk that left soonest as the
// earliest expiry of the pins it kept.
func (w *Watch) ExpiryWalked(now, soonest time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next, w.expiryKnown = Earliest(soonest, w.missed().expiry), true
	w.ended(now)
}

// RepairDue tells whether some pin may be one the repair pass acts on.
func (w *Watch) RepairDue() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.allocatedKnown || w.allocated
}

// RepairWalked is called after a repair walk that found (or not) a pin it
// could act on.
func (w *Watch) RepairWalked(now time.Time, found bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.allocated, w.allocatedKnown = found || w.missed().allocated, true
	w.ended(now)
}

// Surveyed is called after the survey walk, which answers for both passes.
func (w *Watch) Surveyed(now, soonest time.Time, found bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.missed()
	w.next, w.expiryKnown = Earliest(soonest, m.expiry), true
	w.allocated, w.allocatedKnown = found || m.allocated, true
	w.ended(now)
}
