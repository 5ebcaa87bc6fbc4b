package status

import (
	"context"
	"slices"
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
	// Summary, when set, is what a peer's last heartbeat says of its
	// pins (ok false: no heartbeat of it is known). With it, a ring of
	// more than FanOut other peers is answered from the summaries, and
	// only the peers they show with work outstanding are asked.
	Summary func(peer.ID) (s Summary, ok bool)
}

// FanOut is how many other peers a status asks at most before it answers
// from their heartbeats' summaries instead (Global.Summary): in a ring
// of a thousand peers, asking every one for every pin is a thousand
// streams and the whole pinset a thousand times over.
const FanOut = 64

// Summary is what a peer's last heartbeat says of its pins.
type Summary struct {
	// Alive: its heartbeats have not expired.
	Alive bool
	// Queued counts its outstanding operations (queued, running, failed)
	// and the work it has not queued yet.
	Queued int
	// Absorbed is the latest write stamp (Unix nanoseconds) of a pin
	// allocated to it that it took in.
	Absorbed int64
	// At is when the heartbeat was sent.
	At time.Time
}

// large reports whether g answers from summaries rather than asking
// others, every peer.
func (g Global) large(others []peer.ID) bool {
	return g.Summary != nil && len(others) > FanOut
}

// asked are the peers a large ring's status asks: those alive with work
// outstanding. The others are answered for by summarized.
func (g Global) asked(others []peer.ID) []peer.ID {
	var out []peer.ID
	for _, pid := range others {
		if s, ok := g.Summary(pid); ok && s.Alive && s.Queued > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// summarized adds to gpi, from their summaries, the peers gpi's pin is
// allocated to (every peer known, when it is allocated everywhere) that
// gpi has no answer of: pinned when the peer is alive, has nothing
// outstanding and took the pin in; pin_queued when it has not taken it
// in yet; cluster_error when its heartbeats stopped or never came.
func (g Global) summarized(gpi *api.GlobalPinInfo, others []peer.ID) {
	allocs := gpi.Allocations
	if len(allocs) == 0 {
		allocs = others
	}
	for _, pid := range allocs {
		if _, ok := gpi.PeerMap[pid.String()]; ok || pid == g.Self {
			continue
		}
		s, ok := g.Summary(pid)
		pi := api.PinInfo{Cid: gpi.Cid, Peer: pid, PinInfoShort: api.PinInfoShort{Status: api.StatusPinned, TS: s.At.UTC()}}
		switch {
		case !ok:
			pi.Status, pi.Error, pi.TS = api.StatusClusterError, "no heartbeat of this peer is known", time.Now().UTC()
		case !s.Alive:
			pi.Status, pi.Error = api.StatusClusterError, "peer down: its heartbeats stopped"
		case s.Absorbed < gpi.Created.UnixNano():
			pi.Status = api.StatusPinQueued
		}
		pi.PeerName = g.Peername(pid)
		gpi.Add(pi)
	}
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
//
// In a large ring (more than FanOut others, Summary set), it asks only
// the peers the pin is allocated to that have work outstanding, and
// answers for the rest of its allocations from their summaries.
func (g Global) Of(ctx context.Context, c api.Cid) api.GlobalPinInfo {
	var gpi api.GlobalPinInfo
	gpi.Add(g.Local(ctx, c))
	others := g.Others()
	ask, large := others, g.large(others)
	if large {
		ask = g.asked(others)
		if len(gpi.Allocations) > 0 {
			ask = slices.DeleteFunc(ask, func(pid peer.ID) bool { return !slices.Contains(gpi.Allocations, pid) })
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pid := range ask {
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
	if large {
		g.summarized(&gpi, others)
	}
	return gpi
}

// All merges every peer's status stream (this peer's first) into one
// GlobalPinInfo per CID (Merge).
//
// In a large ring (more than FanOut others, Summary set), it asks only the
// peers with work outstanding, and answers for every other allocated
// peer from its summary (summarized): the peers a pin is not allocated
// to are not listed.
func (g Global) All(ctx context.Context, filter api.StatusFilter, fn func(api.GlobalPinInfo) error) error {
	others := g.Others()
	large := g.large(others)
	ask := others
	if large {
		ask = g.asked(others)
	}
	sources := []Source{{Peer: g.Self, Run: g.LocalAll}}
	for _, pid := range ask {
		sources = append(sources, Source{Peer: pid, Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return g.Ask(ctx, pid, api.Cid{}, fn)
		}})
	}
	if !large {
		return Merge(ctx, sources, filter, g.Unreachable, fn)
	}
	return Merge(ctx, sources, nil, g.Unreachable, func(gpi api.GlobalPinInfo) error {
		g.summarized(&gpi, others)
		if !gpi.Keep(filter) {
			return nil
		}
		return fn(gpi)
	})
}
