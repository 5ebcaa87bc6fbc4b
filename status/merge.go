// Package status merges the statuses every peer reports of its pins into
// the cluster-wide view (GET /pins): one GlobalPinInfo per CID, streamed
// in CID key order, with the peers that did not answer shown as such.
package status

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Source is one peer's statuses: Run calls fn with each, in CID key order
// (api.Cid.Key), and returns when done or when fn fails.
type Source struct {
	Peer peer.ID
	Run  func(ctx context.Context, fn func(api.PinInfo) error) error
}

// Merge merges the sources' streams, each in CID key order, into one
// GlobalPinInfo per CID, in that order, and calls fn with each that passes
// filter (keeping only the peers that pass it). A source that fails is
// shown, on the CIDs after its failure that are allocated to it (or
// everywhere), by unreachable. Merge fails when fn does, or when the first
// source (the asking peer's own) failed: the answer is then incomplete.
func Merge(ctx context.Context, sources []Source, filter api.StatusFilter, unreachable func(api.Cid, peer.ID, error) api.PinInfo, fn func(api.GlobalPinInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type source struct {
		pid  peer.ID
		ch   chan api.PinInfo
		err  error // set before ch closes
		head *api.PinInfo
	}
	open := func(src Source) *source {
		s := &source{pid: src.Peer, ch: make(chan api.PinInfo, 256)}
		go func() {
			defer close(s.ch)
			s.err = src.Run(ctx, func(pi api.PinInfo) error {
				select {
				case s.ch <- pi:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}()
		return s
	}
	var opened []*source
	for _, src := range sources {
		opened = append(opened, open(src))
	}
	advance := func(s *source) {
		s.head = nil
		if pi, ok := <-s.ch; ok {
			s.head = &pi
		}
	}
	var failed []*source
	for _, s := range opened {
		if advance(s); s.head == nil && s.err != nil {
			failed = append(failed, s)
		}
	}
	for {
		// The smallest CID key among the heads; everyone at it merges.
		minKey := ""
		for _, s := range opened {
			if s.head != nil && (minKey == "" || s.head.Cid.Key() < minKey) {
				minKey = s.head.Cid.Key()
			}
		}
		if minKey == "" {
			break
		}
		var g api.GlobalPinInfo
		for _, s := range opened {
			if s.head != nil && s.head.Cid.Key() == minKey {
				g.Add(*s.head)
				advance(s)
				if s.head == nil && s.err != nil {
					failed = append(failed, s)
				}
			}
		}
		for _, s := range failed {
			expected := len(g.Allocations) == 0 || slices.Contains(g.Allocations, s.pid)
			if _, ok := g.PeerMap[s.pid.String()]; !ok && expected {
				g.Add(unreachable(g.Cid, s.pid, s.err))
			}
		}
		if !g.Keep(filter) {
			continue
		}
		if err := fn(g); err != nil {
			return err
		}
	}
	if len(opened) > 0 && opened[0].err != nil {
		return opened[0].err // our own listing failed: the answer is incomplete
	}
	return nil
}
