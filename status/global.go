package status

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// One bounds one peer's answer about one CID: the answer is small, so a
// peer that has not given it in that long (a link that died without a
// word) is unreachable.
const One = 5 * time.Second

// Global is the cluster-wide status as one peer asks it: its own, and
// every other cluster peer's over the status protocol.
type Global struct {
	// Self is the asking peer; Local and LocalAll are its own statuses
	// (LocalAll in CID key order).
	Self     peer.ID
	Local    func(ctx context.Context, c api.Cid) api.PinInfo
	LocalAll func(ctx context.Context, fn func(api.PinInfo) error) error
	// Others are the peers to ask; Ask asks one of them for c's status,
	// or for every status in CID key order when c is undefined.
	Others func() []peer.ID
	Ask    func(ctx context.Context, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error
	// Peername is the name a peer announced ("" if none).
	Peername func(peer.ID) string
}

// Unreachable is what the status of a peer that did not answer looks like.
func (g Global) Unreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	pi := api.PinInfo{Cid: c, Peer: pid, PinInfoShort: api.PinInfoShort{
		Status: api.StatusClusterError, Error: "peer unreachable: " + err.Error(), TS: time.Now().UTC()}}
	pi.PeerName = g.Peername(pid)
	return pi
}

// Of asks every peer for c's status, in parallel, each within One, and
// merges the answers.
func (g Global) Of(ctx context.Context, c api.Cid) api.GlobalPinInfo {
	var gpi api.GlobalPinInfo
	gpi.Add(g.Local(ctx, c))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pid := range g.Others() {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, One)
			defer cancel()
			var got *api.PinInfo
			err := g.Ask(sctx, pid, c, func(pi api.PinInfo) error { got = &pi; return nil })
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got != nil:
				gpi.Add(*got)
			case err != nil:
				gpi.Add(g.Unreachable(c, pid, err))
			}
		})
	}
	wg.Wait()
	return gpi
}

// All merges every peer's status stream (this peer's first) into one
// GlobalPinInfo per CID (Merge).
func (g Global) All(ctx context.Context, filter api.StatusFilter, fn func(api.GlobalPinInfo) error) error {
	sources := []Source{{Peer: g.Self, Run: g.LocalAll}}
	for _, pid := range g.Others() {
		sources = append(sources, Source{Peer: pid, Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return g.Ask(ctx, pid, api.Cid{}, fn)
		}})
	}
	return Merge(ctx, sources, filter, g.Unreachable, fn)
}
