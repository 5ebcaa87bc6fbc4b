package crdtstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Admissions live in the same CRDT as the pins, under their own prefix:
// every writer sees every other's, they are signed and merged like pins,
// and a snapshot carries them to a new peer. They bypass the journal: a
// curator writes a handful, not thousands a second.
const admissionsPrefix = "/admitted/"

// maxAdmission bounds one record read back (a peer ID, two times, a note).
const maxAdmission = 1 << 10

func admissionKey(pid peer.ID) ds.Key { return ds.RawKey(admissionsPrefix + pid.String()) }

func isAdmissionKey(k ds.Key) bool { return strings.HasPrefix(k.String(), admissionsPrefix) }

// PutAdmission records a writer's decision about a peer (admitted or
// revoked), replacing any earlier one, and returns once it is durable.
func (s *State) PutAdmission(ctx context.Context, a api.Admission) error {
	if _, err := peer.IDFromBytes([]byte(a.Peer)); err != nil {
		return fmt.Errorf("%w: peer ID: %v", api.ErrBadRequest, err)
	}
	if len(a.Note) > api.MaxAdmissionNote {
		return fmt.Errorf("%w: the note is %d bytes, at most %d", api.ErrBadRequest, len(a.Note), api.MaxAdmissionNote)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := s.crdt.Put(ctx, admissionKey(a.Peer), b); err != nil {
		return err
	}
	return s.deps.Store.Sync(ctx, ds.NewKey(s.deps.Namespace))
}

// Admissions are every peer's latest admission record. A record that does
// not decode is skipped (and logged): it cannot hold up the others.
func (s *State) Admissions(ctx context.Context) ([]api.Admission, error) {
	res, err := s.crdt.Query(ctx, query.Query{Prefix: admissionsPrefix})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []api.Admission
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		a, err := decodeAdmission(r.Value)
		if err != nil {
			logger.Errorf("admission record %s: %s", r.Key, err)
			continue
		}
		out = append(out, a)
	}
	return out, ctx.Err()
}

func decodeAdmission(b []byte) (api.Admission, error) {
	var a api.Admission
	if len(b) > maxAdmission {
		return a, errors.New("too large")
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, err
	}
	_, err := peer.IDFromBytes([]byte(a.Peer))
	return a, err
}

// admissionChanged tells the owner (Deps.OnAdmissions) that an admission
// record changed, here or at another writer.
func (s *State) admissionChanged() {
	if s.deps.OnAdmissions != nil {
		s.deps.OnAdmissions()
	}
}
