package pintracker

import (
	"encoding/binary"
	"slices"
	"time"
)

// heldIndex remembers which CIDs kubo holds recursively, between recover
// passes, so that a changed pin this peer already holds (a re-allocation
// that keeps its replica here) costs no kubo call. It is the last pass's
// listing as a sorted slice of 64-bit hashes (8 bytes a pin: 8 MB at a
// million) plus what was pinned and unpinned since that listing, in maps
// capped at maxHeldChanges.
//
// It may only err towards "not held": a CID it calls held that kubo
// lacks would not be pinned until the next recover pass. So an unpin it
// cannot record (the cap) makes it answer "not held" to everything until
// the next listing; a pin it cannot record only costs a kubo call. Hash
// collisions (1 in 2^64 a lookup) are left to the recover pass.
// t.mu guards it.
type heldIndex struct {
	valid   bool
	base    []uint64        // sorted
	pinned  map[uint64]bool // since the listing
	removed map[uint64]bool // unpinned since the listing
	// changedAt is when each change was recorded, so that a listing
	// installed later keeps the changes made after it was taken.
	changedAt map[uint64]time.Time
	// lostAt is when an unpin last went unrecorded (the index invalid or
	// full): no listing taken before it may be installed.
	lostAt time.Time
}

// maxHeldChanges bounds the changes remembered between two listings.
const maxHeldChanges = 1 << 17

// shortKey is the first 64 bits of a heldSet key: the index's hash.
func shortKey(k [16]byte) uint64 { return binary.BigEndian.Uint64(k[:8]) }

func heldHash(key string) uint64 { return shortKey(heldKey(key)) }

// has reports whether kubo is known to hold key recursively.
func (h *heldIndex) has(key string) bool {
	if !h.valid {
		return false
	}
	k := heldHash(key)
	if h.removed[k] {
		return false
	}
	if h.pinned[k] {
		return true
	}
	_, found := slices.BinarySearch(h.base, k)
	return found
}

// pin records that kubo now holds key recursively.
func (h *heldIndex) pin(key string, now time.Time) { h.change(key, true, now) }

// unpin records that kubo no longer holds key.
func (h *heldIndex) unpin(key string, now time.Time) { h.change(key, false, now) }

func (h *heldIndex) change(key string, held bool, now time.Time) {
	if !h.valid {
		if !held {
			h.lostAt = now
		}
		return
	}
	k := heldHash(key)
	if _, known := h.changedAt[k]; !known && len(h.changedAt) >= maxHeldChanges {
		if !held { // cannot remember it: trust nothing until a later listing
			*h = heldIndex{lostAt: now}
		}
		return
	}
	if held {
		h.pinned[k] = true
		delete(h.removed, k)
	} else {
		h.removed[k] = true
		delete(h.pinned, k)
	}
	h.changedAt[k] = now
}

// install replaces the listing with keys (kubo's recursive pins, listed
// from listed on), keeping the changes recorded since. A listing that
// began before an unpin went unrecorded is not installed.
func (h *heldIndex) install(keys []uint64, listed time.Time) {
	if !h.lostAt.IsZero() && !h.lostAt.Before(listed) {
		return
	}
	slices.Sort(keys)
	pinned, removed, at := map[uint64]bool{}, map[uint64]bool{}, map[uint64]time.Time{}
	if h.valid {
		for k, when := range h.changedAt {
			if when.Before(listed) {
				continue
			}
			at[k] = when
			if h.pinned[k] {
				pinned[k] = true
			} else {
				removed[k] = true
			}
		}
	}
	*h = heldIndex{valid: true, base: keys, pinned: pinned, removed: removed, changedAt: at, lostAt: h.lostAt}
}
