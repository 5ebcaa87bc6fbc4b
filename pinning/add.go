package pinning

import (
	"context"
	"fmt"
	"iter"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
)

// Add imports the entries of an upload
// stream into UnixFS DAGs whose blocks go to this peer's kubo (allocated
// peers fetch them from it), then pins the root cluster-wide — or, with
// erasure coding, stores K+M shards on distinct peers and records an
// ec-meta pin. Progress is reported per file.
func (s *Writer) Add(ctx context.Context, files iter.Seq2[api.AddEntry, error], ap api.AddParams, progress func(api.AddedOutput) error) (api.Cid, error) {
	if err := s.CheckWrite(); err != nil {
		return api.Cid{}, err
	}
	params := adder.Params{Chunker: ap.Chunker, RawLeaves: ap.RawLeaves, CidVersion: ap.CidVersion, HashFun: ap.HashFun, Layout: ap.Layout}
	if err := params.Validate(); err != nil {
		return api.Cid{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	if ap.Erasure {
		if ap.Format == "car" {
			return api.Cid{}, fmt.Errorf("%w: a CAR file cannot be erasure coded (add the file it holds)", api.ErrBadRequest)
		}
		return s.d.Erasure(ctx, files, ap, params, progress)
	}
	if ap.Format == "car" && ap.Wrap {
		return api.Cid{}, fmt.Errorf("%w: a CAR file cannot be wrapped in a directory", api.ErrBadRequest)
	}
	// Allocate first, so that the blocks go to the allocated peers' kubos
	// while they are made (and to this peer's, which serves them too).
	pin := api.Pin{Type: api.DataType, MaxDepth: -1, PinOptions: ap.PinOptions}
	s.Defaults(&pin)
	if err := s.d.CheckAllocations(pin.UserAllocations); err != nil {
		return api.Cid{}, err
	}
	var allocs []peer.ID
	if !ap.NoPin {
		var err error
		if allocs, err = s.d.Allocate(&pin, nil); err != nil {
			return api.Cid{}, err
		}
	}
	fan := s.d.Push(pushTo(ap, allocs))
	defer fan.Close()
	sink := adder.NewSink(ctx, fan)
	// Each line names the peers the pin goes to.
	withAllocs := func(o api.AddedOutput) error {
		o.Allocations = allocs
		return progress(o)
	}
	var root api.Cid
	var rootName string
	var err error
	if ap.Format == "car" {
		root, rootName, err = adder.UploadCAR(ctx, files, sink, withAllocs)
	} else {
		root, rootName, err = adder.Upload(ctx, files, sink, params, ap.Wrap, withAllocs)
	}
	if err != nil {
		return api.Cid{}, err
	}
	if ap.NoPin {
		return root, nil
	}
	pin.Cid = root
	if pin.Name == "" {
		pin.Name = rootName
	}
	if err := pin.Validate(); err != nil {
		return api.Cid{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	pin.Allocations = allocs
	if err := s.Write(ctx, &pin); err != nil {
		return api.Cid{}, err
	}
	return root, nil
}

// pushTo is where an add's blocks are pushed besides this peer's kubo:
// nowhere with local (the allocated peers fetch them when they pin).
func pushTo(ap api.AddParams, allocs []peer.ID) []peer.ID {
	if ap.Local {
		return nil
	}
	return allocs
}
