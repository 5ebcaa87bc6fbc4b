package peer

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Admissions lists every admission record (restapi.Backend).
func (p *Peer) Admissions(ctx context.Context) ([]api.Admission, error) {
	return p.st().Admissions(ctx)
}

// SetAdmission admits pid (revoke false) or revokes it, as this writer,
// and returns the record once it is durable (restapi.Backend).
func (p *Peer) SetAdmission(ctx context.Context, pid peer.ID, revoke bool, note string) (api.Admission, error) {
	if err := p.CheckWrite(); err != nil {
		return api.Admission{}, err
	}
	return p.admitted.Set(ctx, pid, revoke, note)
}
