// Package admission is who a peer allocates pins to: the writers, the
// peers a writer admitted (admission records in the pinset CRDT), or in an
// open ring every peer; never a peer a writer revoked. A heartbeat proves
// only that its author exists (docs/trust.md, "Admission").
package admission

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Policies (allocate.admission).
const (
	// Admitted: the writers and the peers a writer admitted.
	Admitted = "admitted"
	// Open: every peer that sends heartbeats, unless revoked.
	Open = "open"
)

// Deps is what a Book reads and writes.
type Deps struct {
	Self   peer.ID
	Policy string // Admitted or Open
	// IsWriter says whether a peer proved it holds a write key.
	IsWriter func(peer.ID) bool
	// List reads every admission record; Put writes one and returns once
	// it is durable (crdtstate).
	List func(context.Context) ([]api.Admission, error)
	Put  func(context.Context, api.Admission) error
	// Revoked is told when this peer revokes one (the repair moves its
	// pins at once); nil: nobody.
	Revoked func()
}

// Book holds the admission records as last read: allocation asks it for
// every candidate, so they are kept in memory and read again when one
// changes (Changed, then Watch). It is safe for concurrent use.
type Book struct {
	deps Deps

	mu sync.RWMutex
	by map[peer.ID]api.Admission
	// changed wakes Watch (crdtstate's hook must not block).
	changed chan struct{}
}

// New makes an empty book; Reload fills it.
func New(d Deps) *Book {
	return &Book{deps: d, by: map[peer.ID]api.Admission{}, changed: make(chan struct{}, 1)}
}

// Changed says a record changed (crdtstate's OnAdmissions hook): it never
// blocks.
func (b *Book) Changed() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// Reload reads the records again.
func (b *Book) Reload(ctx context.Context) error {
	list, err := b.deps.List(ctx)
	if err != nil {
		return err
	}
	by := make(map[peer.ID]api.Admission, len(list))
	for _, a := range list {
		by[a.Peer] = a
	}
	b.mu.Lock()
	b.by = by
	b.mu.Unlock()
	return nil
}

// Watch reads the records again whenever one changes, until ctx ends.
func (b *Book) Watch(ctx context.Context, warn func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.changed:
			if err := b.Reload(ctx); err != nil && ctx.Err() == nil && warn != nil {
				warn(err)
			}
		}
	}
}

// Get is pid's record, if a writer wrote one.
func (b *Book) Get(pid peer.ID) (api.Admission, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.by[pid]
	return r, ok
}

// Of says whether this peer allocates pins to pid, and why (an
// api.Admission* value). A revocation wins over everything but being this
// peer.
func (b *Book) Of(pid peer.ID) string {
	r, ok := b.Get(pid)
	switch {
	case ok && r.Revoked && pid != b.deps.Self:
		return api.AdmissionRevoked
	case b.deps.IsWriter(pid):
		return api.AdmissionWriter
	case ok && !r.Revoked:
		return api.AdmissionAdmitted
	case b.deps.Policy == Open:
		return api.AdmissionOpen
	}
	return api.AdmissionNone
}

// AdmittedOrOpen reports whether pid is a member by a writer's admission
// or the ring's open policy (whether it is a writer aside): it reads no
// membership table, so the table may ask it under its lock.
func (b *Book) AdmittedOrOpen(pid peer.ID) bool {
	if r, ok := b.Get(pid); ok {
		return !r.Revoked
	}
	return b.deps.Policy == Open
}

// Allocatable reports whether pins may be allocated to pid.
func (b *Book) Allocatable(pid peer.ID) bool {
	switch b.Of(pid) {
	case api.AdmissionWriter, api.AdmissionAdmitted, api.AdmissionOpen:
		return true
	}
	return false
}

// Revoked are the peers a writer revoked: the repair moves their pins as
// it moves a dead peer's.
func (b *Book) Revoked() map[peer.ID]bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := map[peer.ID]bool{}
	for pid, r := range b.by {
		if r.Revoked && pid != b.deps.Self {
			out[pid] = true
		}
	}
	return out
}

// Set admits pid (revoke false) or revokes it, as this peer (a writer:
// the caller checks), and returns the record once it is durable.
func (b *Book) Set(ctx context.Context, pid peer.ID, revoke bool, note string) (api.Admission, error) {
	if pid == b.deps.Self && revoke {
		return api.Admission{}, fmt.Errorf("%w: a peer cannot revoke itself", api.ErrBadRequest)
	}
	a := api.Admission{Peer: pid, Revoked: revoke, By: b.deps.Self, At: time.Now().UTC(), Note: note}
	if err := b.deps.Put(ctx, a); err != nil {
		return api.Admission{}, err
	}
	// Allocation sees it from now on, not when the hook's reload runs.
	b.mu.Lock()
	by := maps.Clone(b.by)
	by[pid] = a
	b.by = by
	b.mu.Unlock()
	if revoke && b.deps.Revoked != nil {
		b.deps.Revoked()
	}
	return a, nil
}

// Unverified reports whether pid is a peer whose allocations are capped:
// not a writer, and no audit passed since it was admitted (or, in an open
// ring, ever).
func (b *Book) Unverified(pid peer.ID) bool {
	if pid == b.deps.Self || b.deps.IsWriter(pid) {
		return false
	}
	r, ok := b.Get(pid)
	return !ok || r.Verified.IsZero()
}

// Verify records, once, that pid passed an audit (this peer's, a
// writer's): its record gets Verified, which lifts the cap ring-wide. A
// revoked peer stays revoked; a writer needs no record.
func (b *Book) Verify(ctx context.Context, pid peer.ID) error {
	if !b.Unverified(pid) {
		return nil
	}
	r, ok := b.Get(pid)
	if ok && r.Revoked {
		return nil
	}
	if !ok && b.deps.Policy != Open {
		return nil // not admitted: it holds nothing to verify
	}
	now := time.Now().UTC()
	a := api.Admission{Peer: pid, By: b.deps.Self, At: now, Note: r.Note, Verified: now}
	if ok {
		a.By, a.At = r.By, r.At // the admission stays the curator's
	}
	if err := b.deps.Put(ctx, a); err != nil {
		return err
	}
	b.mu.Lock()
	by := maps.Clone(b.by)
	by[pid] = a
	b.by = by
	b.mu.Unlock()
	return nil
}

// CheckAllocations refuses user allocations that name a peer this peer
// would not allocate to, rather than quietly placing the pin elsewhere.
func (b *Book) CheckAllocations(users []peer.ID) error {
	for _, u := range users {
		switch b.Of(u) {
		case api.AdmissionNone:
			return fmt.Errorf("%w: allocations: peer %s is not admitted to this ring (allocate.admission is %q): a curator admits it with 'cluster-ctl peers admit %s'",
				api.ErrBadRequest, u, b.deps.Policy, u)
		case api.AdmissionRevoked:
			return fmt.Errorf("%w: allocations: peer %s was revoked from this ring", api.ErrBadRequest, u)
		}
	}
	return nil
}
