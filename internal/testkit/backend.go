package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
)

// Backend is the one fake peer behind the HTTP front ends' unit tests: a
// pinset in a map, safe for concurrent use. It implements
// api.RESTBackend and api.PinningBackend. Every pin is "pinned" on one
// peer, "peerA", unless its name starts with "queued" (queued) or "failed"
// (pin error); each stored pin gets a timestamp one second after the last.
type Backend struct {
	mu        sync.Mutex
	pins      map[string]api.Pin
	clock     time.Time
	last      api.Pin
	streamErr error
	unhealthy bool
}

// NewBackend returns an empty fake whose clock starts at 2026-01-01 UTC.
func NewBackend() *Backend {
	return &Backend{pins: map[string]api.Pin{}, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Len is the number of pins held.
func (b *Backend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pins)
}

// Get returns the pin held for c, as stored.
func (b *Backend) Get(c api.Cid) (api.Pin, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pins[c.Key()]
	return p, ok
}

// Put stores p as it is, without going through Pin.
func (b *Backend) Put(p api.Pin) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pins[p.Cid.Key()] = p
}

// LastPin is the last pin Pin stored.
func (b *Backend) LastPin() api.Pin {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// FailStreams makes Pins return err after streaming every pin.
func (b *Backend) FailStreams(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streamErr = err
}

// SetUnhealthy makes Health report the peer unhealthy.
func (b *Backend) SetUnhealthy(u bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unhealthy = u
}

func (b *Backend) ID(context.Context) api.ID {
	return api.ID{ID: peer.ID("self"), Peername: "fake"}
}

func (b *Backend) Peers(ctx context.Context, fn func(api.ID) error) error {
	return fn(b.ID(ctx))
}

func (b *Backend) Pin(_ context.Context, p api.Pin) (api.Pin, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clock = b.clock.Add(time.Second)
	p.Timestamp = b.clock
	b.pins[p.Cid.Key()] = p
	b.last = p
	return p, nil
}

func (b *Backend) Unpin(_ context.Context, c api.Cid) (api.Pin, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pins[c.Key()]
	if !ok {
		return p, fmt.Errorf("%w: %s is not in the pinset", api.ErrNotFound, c)
	}
	delete(b.pins, c.Key())
	return p, nil
}

// Replace is the peer's: the new pin, then the old one's removal.
func (b *Backend) Replace(ctx context.Context, from api.Cid, to api.Pin) (api.Pin, error) {
	stored, err := b.Pin(ctx, to)
	if err == nil && !from.Equals(to.Cid.Cid) {
		_, _ = b.Unpin(ctx, from)
	}
	return stored, err
}

func (b *Backend) PinGet(_ context.Context, c api.Cid) (api.Pin, error) {
	if p, ok := b.Get(c); ok {
		return p, nil
	}
	return api.Pin{}, fmt.Errorf("%w: %s is not in the pinset", api.ErrNotFound, c)
}

func (b *Backend) Pins(_ context.Context, fn func(api.Pin) error) error {
	b.mu.Lock()
	all := make([]api.Pin, 0, len(b.pins))
	for _, p := range b.pins {
		all = append(all, p)
	}
	streamErr := b.streamErr
	b.mu.Unlock()
	for _, p := range all {
		if err := fn(p); err != nil {
			return err
		}
	}
	return streamErr
}

// ResolvePath resolves any path to the CID in its second segment
// (/ipfs/<cid>/...).
func (b *Backend) ResolvePath(_ context.Context, path string) (api.Cid, error) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) < 2 {
		return api.Cid{}, fmt.Errorf("%w: path %q names no CID", api.ErrBadRequest, path)
	}
	return api.ParseCid(parts[1])
}

func global(c api.Cid, p api.Pin) api.GlobalPinInfo {
	st := api.StatusPinned
	switch {
	case strings.HasPrefix(p.Name, "queued"):
		st = api.StatusPinQueued
	case strings.HasPrefix(p.Name, "failed"):
		st = api.StatusPinError
	}
	kubo, _ := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	return api.GlobalPinInfo{Cid: c, Name: p.Name, Created: p.Timestamp, Metadata: p.Metadata,
		PeerMap: map[string]api.PinInfoShort{"peerA": {PeerName: "peerA", Status: st, IPFSAddresses: []ma.Multiaddr{kubo}}}}
}

// Status reports any CID, held or not, by the rule of the type's doc.
func (b *Backend) Status(_ context.Context, c api.Cid, _ bool) (api.GlobalPinInfo, error) {
	p, _ := b.Get(c)
	return global(c, p), nil
}

func (b *Backend) StatusAll(ctx context.Context, filter api.StatusFilter, _ bool, fn func(api.GlobalPinInfo) error) error {
	b.mu.Lock()
	var all []api.GlobalPinInfo
	for _, p := range b.pins {
		if g := global(p.Cid, p); g.Keep(filter) {
			all = append(all, g)
		}
	}
	b.mu.Unlock()
	for _, g := range all {
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) Recover(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error) {
	return b.Status(ctx, c, local)
}

func (b *Backend) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	return b.StatusAll(ctx, nil, local, fn)
}

func (b *Backend) Digest(context.Context) (api.StateDigest, error) {
	return api.StateDigest{Digest: "d", Pins: uint64(b.Len())}, nil
}

func (b *Backend) Health(context.Context) api.Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.Health{Healthy: !b.unhealthy, ConnectedPeers: 2}
}

func (b *Backend) Graph(context.Context) api.Graph { return api.Graph{} }

func (b *Backend) Leave(context.Context, peer.ID) error { return nil }

// Add reads every file and reports each with its size.
func (b *Backend) Add(_ context.Context, files iter.Seq2[api.AddEntry, error], _ api.AddParams, progress func(api.AddedOutput) error) (api.Cid, error) {
	for e, err := range files {
		if err != nil {
			return api.Cid{}, err
		}
		n := int64(0)
		if e.Body != nil {
			if n, err = io.Copy(io.Discard, e.Body); err != nil {
				return api.Cid{}, err
			}
		}
		if err := progress(api.AddedOutput{Name: e.Path, Size: uint64(n)}); err != nil {
			return api.Cid{}, err
		}
	}
	return api.Cid{}, nil
}

func (b *Backend) ECGet(context.Context, api.Cid, io.Writer) error {
	return errors.New("no erasure-coded files in this fake")
}

func (b *Backend) ECRepair(context.Context, *api.Cid) ([]api.ECRepair, error) { return nil, nil }

func (b *Backend) MetricNames(context.Context) []string { return nil }

// Metrics has one valid "freespace" metric of 100, from "p1".
func (b *Backend) Metrics(_ context.Context, name string) []api.Metric {
	if name != "freespace" {
		return nil
	}
	return []api.Metric{{Name: name, Peer: "p1", Value: "100", Valid: true}}
}

func (b *Backend) Alerts(context.Context) []api.Alert { return nil }

// RepoGC collects nothing here and names "other" unreachable unless local.
func (b *Backend) RepoGC(_ context.Context, local bool) (api.GlobalRepoGC, error) {
	g := api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{"self": {Peername: "self", Keys: []api.IPFSRepoGC{}}}}
	if !local {
		g.PeerMap["other"] = api.RepoGC{Peername: "other", Error: "unreachable"}
	}
	return g, nil
}

func (b *Backend) Bandwidth(context.Context) map[string]api.Bandwidth {
	return map[string]api.Bandwidth{"/meshsub/1.1.0": {TotalIn: 10, TotalOut: 20, RateIn: 1.5}}
}

func (b *Backend) Admissions(context.Context) ([]api.Admission, error) { return nil, nil }

func (b *Backend) SetAdmission(_ context.Context, pid peer.ID, revoke bool, note string) (api.Admission, error) {
	return api.Admission{Peer: pid, Revoked: revoke, Note: note}, nil
}

func (b *Backend) Audit(context.Context, api.Cid, peer.ID) ([]api.AuditResult, error) {
	return nil, nil
}

func (b *Backend) SwarmConnect(context.Context, ...ma.Multiaddr) error { return nil }

var (
	_ api.RESTBackend    = (*Backend)(nil)
	_ api.PinningBackend = (*Backend)(nil)
)
