package repair

import (
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/allocate"
	"github.com/pinring/pinring/api"
)

// View is the ring as one pass sees it, read once when the pass begins.
type View struct {
	Self peer.ID
	// Live are the trusted live peers (writers with a valid heartbeat, and
	// Self): the peers that may act, in rendezvous order per CID.
	Live []peer.ID
	// Dead are the peers whose heartbeats expired more than repair.grace
	// ago; Full, those whose repo is over allocate.full_threshold.
	Dead, Full map[peer.ID]bool
	// Unheard, when not nil, tells which other peers count as dead
	// because no heartbeat of theirs was ever heard (pubsubmon's Unheard).
	Unheard func(peer.ID) bool
	// Failed are the replicas audits found failing too often, by CID key:
	// each moves off its peer, to a different one.
	Failed map[string][]peer.ID
	// Room is how many peers could take one more pin.
	Room int
	// RebalanceBatch is the most pins a pass moves off each full peer
	// (repair.rebalance_batch; 0: no rebalancing).
	RebalanceBatch int
}

// Move is one pin a pass re-allocates: off dead peers (a repair), or off
// one full peer (a rebalance).
type Move struct {
	Pin       api.Pin
	Rebalance bool
	// Leaving are the peers the pin moves off; Keep, its allocations
	// without them, which the new allocation starts from.
	Leaving map[peer.ID]bool
	Keep    []peer.ID
	// Avoid are peers the new allocation must not choose (those whose
	// replica failed its audits).
	Avoid []peer.ID
}

// Plan is one repair pass's decisions, made pin by pin as the pass walks
// the pinset.
type Plan struct {
	v      View
	dead   map[peer.ID]bool // View.Dead, and the unheard peers met so far
	moving map[peer.ID]int  // pins picked to move off each full peer
	// Moves are the pins to re-allocate, in the order they were seen.
	Moves []Move
	// Found is whether any pin was one a repair pass can act on (see
	// Watch.RepairWalked).
	Found bool
}

// NewPlan starts a pass over v.
func NewPlan(v View) *Plan {
	dead := maps.Clone(v.Dead)
	if dead == nil {
		dead = map[peer.ID]bool{}
	}
	return &Plan{v: v, dead: dead, moving: map[peer.ID]int{}}
}

// Consider decides for one pin: whether it moves, and why.
func (pl *Plan) Consider(pin api.Pin) {
	if !Repairable(&pin) {
		return // on every peer, or an erasure-coded file's (repaired apart)
	}
	pl.Found = true
	// The cheap questions first: most pins need nothing, and who is in
	// charge costs a hash per live peer and the CID's string.
	if pl.v.Unheard != nil {
		for _, a := range pin.Allocations {
			if !pl.dead[a] && pl.v.Unheard(a) {
				pl.dead[a] = true
			}
		}
	}
	repair := NeedsRepair(&pin, pl.dead, pl.v.Room)
	var failed []peer.ID
	if len(pl.v.Failed) > 0 {
		for _, a := range pl.v.Failed[pin.Cid.Key()] {
			if slices.Contains(pin.Allocations, a) {
				failed = append(failed, a)
			}
		}
		repair = repair || len(failed) > 0
	}
	var from peer.ID
	move := false
	if !repair {
		from, move = RebalanceFrom(&pin, pl.v.Full, pl.moving, pl.v.RebalanceBatch)
	}
	if (!repair && !move) || !InCharge(pl.v.Self, pin.Cid.Key(), pl.v.Live) {
		return
	}
	leaving := pl.dead
	if move {
		pl.moving[from]++
		leaving = pl.v.Full
	}
	if len(failed) > 0 {
		leaving = maps.Clone(leaving)
		if leaving == nil {
			leaving = map[peer.ID]bool{}
		}
		for _, a := range failed {
			leaving[a] = true
		}
	}
	keep := slices.DeleteFunc(slices.Clone(pin.Allocations), func(a peer.ID) bool { return leaving[a] })
	pl.Moves = append(pl.Moves, Move{Pin: pin, Rebalance: move, Leaving: leaving, Keep: keep, Avoid: failed})
}

// Decide is what becomes of a move once the allocator answered (allocs,
// err) for it: the allocations to write, or write false to leave the pin
// as it is. A rebalanced pin that fits nowhere else stays where it is,
// never dropped; a repaired pin that cannot be placed at least loses its
// dead peers (it stays under-replicated until capacity appears).
func Decide(m Move, allocs []peer.ID, err error) (next []peer.ID, write bool) {
	switch {
	case m.Rebalance && (err != nil || len(allocs) < len(m.Pin.Allocations)):
		return nil, false
	case err != nil:
		if len(m.Keep) == len(m.Pin.Allocations) {
			return nil, false
		}
		allocs = m.Keep
	}
	if SameSet(allocs, m.Pin.Allocations) {
		return nil, false
	}
	return allocs, true
}

// Expiry is one expiry pass's decisions.
type Expiry struct {
	now  time.Time
	self peer.ID
	live []peer.ID
	// Remove are the expired pins this peer is in charge of.
	Remove []api.Cid
	// Soonest is the earliest expiry of the pins that stay (zero: none).
	Soonest time.Time
}

// NewExpiry starts an expiry pass at now, as self among the live peers.
func NewExpiry(now time.Time, self peer.ID, live []peer.ID) *Expiry {
	return &Expiry{now: now, self: self, live: live}
}

// Consider decides for one pin.
func (e *Expiry) Consider(pin api.Pin) {
	if pin.ExpireAt.IsZero() {
		return
	}
	if pin.Expired(e.now) && InCharge(e.self, pin.Cid.Key(), e.live) {
		e.Remove = append(e.Remove, pin.Cid)
		return
	}
	e.Soonest = Earliest(e.Soonest, pin.ExpireAt)
}

// InCharge reports whether self is the peer to act on key: the first live
// trusted peer in rendezvous order. Every peer computes the same answer
// from the same heartbeats, so exactly one acts and there is no leader.
func InCharge(self peer.ID, key string, live []peer.ID) bool {
	order := allocate.RendezvousOrder(key, live)
	return len(order) > 0 && order[0] == self
}

// NeedsRepair reports whether pin has a replica on a dead peer, or fewer
// allocations than its maximum while room peers could take more.
func NeedsRepair(pin *api.Pin, dead map[peer.ID]bool, room int) bool {
	if pin.ReplicationFactorMax == -1 {
		return false
	}
	lost := slices.ContainsFunc(pin.Allocations, func(a peer.ID) bool { return dead[a] })
	under := len(pin.Allocations) < pin.ReplicationFactorMax && room > len(pin.Allocations)
	return lost || under
}

// RebalanceFrom picks the full peer to move pin off, if any and if fewer
// than batch pins were picked from it in this pass already.
func RebalanceFrom(pin *api.Pin, full map[peer.ID]bool, moving map[peer.ID]int, batch int) (peer.ID, bool) {
	if batch <= 0 || pin.ReplicationFactorMax == -1 {
		return "", false
	}
	for _, a := range pin.Allocations {
		if full[a] && moving[a] < batch {
			return a, true
		}
	}
	return "", false
}

// SameSet reports whether a and b hold the same peers.
func SameSet(a, b []peer.ID) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
