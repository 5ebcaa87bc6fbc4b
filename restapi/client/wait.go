package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Concerns reports whether the peer pid should end up in target for p:
// every peer for a removal or a pin everywhere, else its allocations.
func Concerns(p api.Pin, pid string, target api.TrackerStatus) bool {
	return target == api.StatusUnpinned || len(p.Allocations) == 0 ||
		slices.ContainsFunc(p.Allocations, func(a peer.ID) bool { return a.String() == pid })
}

// reached reports whether status counts as target.
func reached(status, target api.TrackerStatus) bool {
	return status == target || (target == api.StatusUnpinned && status == api.StatusRemote)
}

// WaitFor polls the status of p every 200 ms until need of the peers
// concerned report target (all of them when need <= 0 or when fewer are
// concerned), and fails on an error status.
func (c *Client) WaitFor(ctx context.Context, p api.Pin, target api.TrackerStatus, need int) error {
	return Wait(ctx, func(ctx context.Context, ci api.Cid) (api.GlobalPinInfo, error) { return c.Status(ctx, ci, false) },
		p, target, need, true)
}

// Wait is WaitFor with the status read by status (a client's, or a
// peer's own), failing on an error status only with failOnError.
func Wait(ctx context.Context, status func(context.Context, api.Cid) (api.GlobalPinInfo, error), p api.Pin, target api.TrackerStatus, need int, failOnError bool) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	concerned, done := 0, 0
	gaveUp := func(err error) error {
		want := concerned
		if need > 0 && need < concerned {
			want = need
		}
		return fmt.Errorf("gave up waiting for %s to be %s on %d of %d peers (%d are): %w", p.Cid, target, want, concerned, done, err)
	}
	for {
		g, err := status(ctx, p.Cid)
		if err != nil {
			if ctx.Err() != nil { // --wait-timeout, in the middle of a request
				return gaveUp(ctx.Err())
			}
			return err
		}
		concerned, done = 0, 0
		for pid, pi := range g.PeerMap {
			if failOnError && pi.Status.IsError() {
				return fmt.Errorf("%s on %s: %s %s", p.Cid, pid, pi.Status, pi.Error)
			}
			if Concerns(p, pid, target) {
				concerned++
				if reached(pi.Status, target) {
					done++
				}
			}
		}
		if concerned > 0 && (done == concerned || (need > 0 && done >= need)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return gaveUp(ctx.Err())
		case <-tick.C:
		}
	}
}
