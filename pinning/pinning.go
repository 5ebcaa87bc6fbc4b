// Package pinning is the write side of the cluster: how a request to pin,
// update or unpin becomes a record in the pinset — the cluster's default
// replication factors, a pin-update's inherited options, the checks, the
// allocation, the writer's key — acknowledged once the pinset holds it
// durably. Every front end (REST API, Pinning Service API, IPFS proxy,
// add) and the repair loop write through it.
package pinning

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/crdtstate"
)

// Pinset is the replicated pinset (crdtstate.State).
type Pinset interface {
	Get(ctx context.Context, c api.Cid) (*api.Pin, error)
	Add(ctx context.Context, p *api.Pin) error
	Rm(ctx context.Context, c api.Cid) error
}

// Deps are what the pins are written with.
type Deps struct {
	// Cluster names the cluster (in errors).
	Cluster string
	// Writer is this peer's public write key as records name it; "" on a
	// read-only peer, which refuses every write.
	Writer string
	// ReplicationMin and ReplicationMax are the cluster's defaults.
	ReplicationMin, ReplicationMax int
	Pinset                         Pinset
	// CheckAllocations refuses user allocations to peers that may not
	// take pins.
	CheckAllocations func([]peer.ID) error
	// Allocate picks the peers for pin, keeping what it can of current
	// (nil: every peer).
	Allocate func(pin *api.Pin, current []peer.ID) ([]peer.ID, error)
	// Push stores an upload's blocks in this peer's kubo and pushes them
	// to the peers in to; Add closes it when done.
	Push func(to []peer.ID) BlockPush
	// Erasure adds an upload erasure coded (ecfile.Files.Add).
	Erasure func(ctx context.Context, files iter.Seq2[api.AddEntry, error], ap api.AddParams, params adder.Params, progress func(api.AddedOutput) error) (api.Cid, error)
}

// BlockPush is where an upload's blocks go (p2p.Fanout).
type BlockPush interface {
	adder.BlockSink
	Close()
}

// Writer writes pins. It holds no state of its own: it is safe for
// concurrent use as far as its Deps are.
type Writer struct{ d Deps }

// New returns the write side over d.
func New(d Deps) *Writer { return &Writer{d: d} }

// CheckWrite refuses a write on a peer without a write key.
func (s *Writer) CheckWrite() error {
	if s.d.Writer == "" {
		return fmt.Errorf("%w: this peer is read-only: it holds no write key of cluster %q, so it cannot change the pinset; send writes to a curator's peer",
			api.ErrForbidden, s.d.Cluster)
	}
	return nil
}

// Write stores pin as written by this peer's key, as it is (allocations
// included); it returns once the write is durable.
func (s *Writer) Write(ctx context.Context, pin *api.Pin) error {
	if err := s.CheckWrite(); err != nil {
		return err
	}
	pin.Writer = s.d.Writer
	return s.d.Pinset.Add(ctx, pin)
}

// Defaults fills in the replication factors the pin leaves open with the
// cluster's.
func (s *Writer) Defaults(pin *api.Pin) {
	pin.DefaultReplication(s.d.ReplicationMin, s.d.ReplicationMax)
}

// Pin fills in defaults and allocations, then writes the pin; it returns
// the record as stored once the write is durable.
func (s *Writer) Pin(ctx context.Context, pin api.Pin) (api.Pin, error) {
	if err := s.CheckWrite(); err != nil {
		return api.Pin{}, err
	}
	if pin.PinUpdate.Defined() {
		from, err := s.d.Pinset.Get(ctx, pin.PinUpdate)
		if errors.Is(err, crdtstate.ErrNotFound) {
			return api.Pin{}, fmt.Errorf("%w: pin-update: %s is not in the pinset", api.ErrBadRequest, pin.PinUpdate)
		}
		if err != nil {
			return api.Pin{}, err
		}
		pin.Inherit(from)
	}
	s.Defaults(&pin)
	if err := pin.Validate(); err != nil {
		return api.Pin{}, err
	}
	if err := s.d.CheckAllocations(pin.UserAllocations); err != nil {
		return api.Pin{}, err
	}
	var current []peer.ID
	if pin.ReplicationFactorMax != -1 { // allocation keeps what it can
		if old, err := s.d.Pinset.Get(ctx, pin.Cid); err == nil {
			current = old.Allocations
		} else if !errors.Is(err, crdtstate.ErrNotFound) {
			return api.Pin{}, err
		}
	}
	allocs, err := s.d.Allocate(&pin, current)
	if err != nil {
		return api.Pin{}, err
	}
	pin.Allocations = allocs
	if err := s.Write(ctx, &pin); err != nil {
		return api.Pin{}, err
	}
	// The record as stored and as every reader will decode it, without
	// reading it back from the pinset.
	stored, err := crdtstate.DecodePin(crdtstate.EncodePin(&pin))
	if err != nil {
		return api.Pin{}, err
	}
	return *stored, nil
}

// Replace pins to, then removes from unless it is the same CID, so that
// blocks the two share are never without a pin; a from already gone is no
// error (the Pinning Service API's and the proxy's update).
func (s *Writer) Replace(ctx context.Context, from api.Cid, to api.Pin) (api.Pin, error) {
	stored, err := s.Pin(ctx, to)
	if err != nil {
		return stored, err
	}
	if !from.Equals(to.Cid.Cid) {
		if _, err := s.Unpin(ctx, from); err != nil && !errors.Is(err, api.ErrNotFound) {
			return stored, err
		}
	}
	return stored, nil
}

// Unpin removes c from the pinset and returns the record it had.
func (s *Writer) Unpin(ctx context.Context, c api.Cid) (api.Pin, error) {
	if err := s.CheckWrite(); err != nil {
		return api.Pin{}, err
	}
	pin, err := s.PinGet(ctx, c)
	if err != nil {
		return api.Pin{}, err
	}
	if err := s.d.Pinset.Rm(ctx, c); errors.Is(err, crdtstate.ErrNotFound) {
		return api.Pin{}, notFound(c)
	} else if err != nil {
		return api.Pin{}, err
	}
	return pin, nil
}

// PinGet is c's record.
func (s *Writer) PinGet(ctx context.Context, c api.Cid) (api.Pin, error) {
	pin, err := s.d.Pinset.Get(ctx, c)
	if errors.Is(err, crdtstate.ErrNotFound) {
		return api.Pin{}, notFound(c)
	}
	if err != nil {
		return api.Pin{}, err
	}
	return *pin, nil
}

func notFound(c api.Cid) error {
	return fmt.Errorf("%w: %s is not in the pinset", api.ErrNotFound, c)
}
