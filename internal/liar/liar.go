// Package liar is the dishonest follower of the audit tests (e2e
// TestAuditsCatchLiars): a kubo connector whose pins are pretended. A peer
// built with -tags pinring_liar pins through it (peer/liar.go); nothing
// else imports it, and no release holds it.
package liar

import (
	"context"
	"sync"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/pintracker"
)

// Wrap returns k, except that what is pinned through it is only
// remembered: it says it pinned what it is asked to, and lists it as
// pinned, but never asks kubo, so kubo never holds the data.
func Wrap(k pintracker.IPFS) pintracker.IPFS {
	return &liar{IPFS: k, held: map[string]api.Cid{}}
}

type liar struct {
	pintracker.IPFS
	mu   sync.Mutex
	held map[string]api.Cid
}

func (l *liar) Pin(_ context.Context, c api.Cid, _ api.PinMode, _ func(uint64)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held[c.Key()] = c
	return nil
}

func (l *liar) PinMany(ctx context.Context, cs []api.Cid, m api.PinMode, p func(uint64)) error {
	for _, c := range cs {
		l.Pin(ctx, c, m, p)
	}
	return nil
}

func (l *liar) PinUpdate(ctx context.Context, _, to api.Cid) error {
	return l.Pin(ctx, to, api.PinModeRecursive, nil)
}

func (l *liar) Unpin(_ context.Context, c api.Cid) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, c.Key())
	return nil
}

func (l *liar) PinLsCid(ctx context.Context, c api.Cid) (api.IPFSPinStatus, error) {
	l.mu.Lock()
	_, ok := l.held[c.Key()]
	l.mu.Unlock()
	if ok {
		return api.IPFSPinRecursive, nil
	}
	return l.IPFS.PinLsCid(ctx, c)
}

func (l *liar) PinLs(ctx context.Context, typ string, out chan<- api.IPFSPinInfo) error {
	l.mu.Lock()
	var fake []api.Cid
	for _, c := range l.held {
		fake = append(fake, c)
	}
	l.mu.Unlock()
	real := make(chan api.IPFSPinInfo, 64)
	errc := make(chan error, 1)
	go func() { errc <- l.IPFS.PinLs(ctx, typ, real) }()
	defer close(out)
	for _, c := range fake {
		select {
		case out <- api.IPFSPinInfo{Cid: c, Type: api.IPFSPinRecursive}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for pi := range real {
		select {
		case out <- pi:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return <-errc
}
