package peer

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// admissions are the writers' decisions about peers (crdtstate's
// admission records), as last read: allocation asks them for every
// candidate, so they are kept in memory and read again when one changes.
type admissions struct {
	mu sync.RWMutex
	by map[peer.ID]api.Admission
	// changed wakes the reader (crdtstate's hook must not block).
	changed chan struct{}
}

func newAdmissions() *admissions {
	return &admissions{by: map[peer.ID]api.Admission{}, changed: make(chan struct{}, 1)}
}

func (a *admissions) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *admissions) get(pid peer.ID) (api.Admission, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r, ok := a.by[pid]
	return r, ok
}

// reloadAdmissions reads the admission records again.
func (p *Peer) reloadAdmissions(ctx context.Context) error {
	list, err := p.state.Admissions(ctx)
	if err != nil {
		return err
	}
	by := make(map[peer.ID]api.Admission, len(list))
	for _, a := range list {
		by[a.Peer] = a
	}
	p.admitted.mu.Lock()
	p.admitted.by = by
	p.admitted.mu.Unlock()
	return nil
}

// watchAdmissions reads the records again whenever one changes, until ctx
// ends.
func (p *Peer) watchAdmissions(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.admitted.changed:
			if err := p.reloadAdmissions(ctx); err != nil && ctx.Err() == nil {
				logger.Warnf("reading the admissions: %s", err)
			}
		}
	}
}

// admissionOf says whether this peer allocates pins to pid, and why (an
// api.Admission* value). A revocation wins over everything but being
// this peer.
func (p *Peer) admissionOf(pid peer.ID) string {
	r, ok := p.admitted.get(pid)
	switch {
	case ok && r.Revoked && pid != p.host.ID():
		return api.AdmissionRevoked
	case p.isWriter(pid):
		return api.AdmissionWriter
	case ok && !r.Revoked:
		return api.AdmissionAdmitted
	case p.cfg.Allocate.Admission == AdmissionOpen:
		return api.AdmissionOpen
	}
	return api.AdmissionNone
}

// admittedOrOpen reports whether pid is a member by a writer's admission
// or the ring's open policy (whether it is a writer aside): it reads no
// membership table, so the table may ask it under its lock.
func (p *Peer) admittedOrOpen(pid peer.ID) bool {
	r, ok := p.admitted.get(pid)
	if ok {
		return !r.Revoked
	}
	return p.cfg.Allocate.Admission == AdmissionOpen
}

// allocatable reports whether pins may be allocated to pid: a heartbeat
// proves only that its author exists (docs/security.md, "Admission").
func (p *Peer) allocatable(pid peer.ID) bool {
	switch p.admissionOf(pid) {
	case api.AdmissionWriter, api.AdmissionAdmitted, api.AdmissionOpen:
		return true
	}
	return false
}

// revokedPeers are the peers a writer revoked: the repair moves their
// pins as it moves a dead peer's.
func (p *Peer) revokedPeers() map[peer.ID]bool {
	p.admitted.mu.RLock()
	defer p.admitted.mu.RUnlock()
	out := map[peer.ID]bool{}
	for pid, r := range p.admitted.by {
		if r.Revoked && pid != p.host.ID() {
			out[pid] = true
		}
	}
	return out
}

// Admissions lists every admission record (restapi.Backend).
func (p *Peer) Admissions(ctx context.Context) ([]api.Admission, error) {
	return p.state.Admissions(ctx)
}

// SetAdmission admits pid (revoke false) or revokes it, as this writer,
// and returns the record once it is durable (restapi.Backend).
func (p *Peer) SetAdmission(ctx context.Context, pid peer.ID, revoke bool, note string) (api.Admission, error) {
	if err := p.checkWrite(); err != nil {
		return api.Admission{}, err
	}
	if pid == p.host.ID() && revoke {
		return api.Admission{}, fmt.Errorf("%w: a peer cannot revoke itself", api.ErrBadRequest)
	}
	a := api.Admission{Peer: pid, Revoked: revoke, By: p.host.ID(), At: time.Now().UTC(), Note: note}
	if err := p.state.PutAdmission(ctx, a); err != nil {
		return api.Admission{}, err
	}
	// Allocation sees it from now on, not when the hook's reload runs.
	p.admitted.mu.Lock()
	by := maps.Clone(p.admitted.by)
	by[pid] = a
	p.admitted.by = by
	p.admitted.mu.Unlock()
	if revoke {
		p.repairs.Kick()
	}
	return a, nil
}

// checkUserAllocations refuses a write whose --allocations name a peer
// this writer would not allocate to, rather than quietly placing the pin
// elsewhere.
func (p *Peer) checkUserAllocations(pin *api.Pin) error {
	for _, u := range pin.UserAllocations {
		switch p.admissionOf(u) {
		case api.AdmissionNone:
			return fmt.Errorf("%w: allocations: peer %s is not admitted to this ring (allocate.admission is %q): a curator admits it with 'cluster-ctl peers admit %s'",
				api.ErrBadRequest, u, p.cfg.Allocate.Admission, u)
		case api.AdmissionRevoked:
			return fmt.Errorf("%w: allocations: peer %s was revoked from this ring", api.ErrBadRequest, u)
		}
	}
	return nil
}
