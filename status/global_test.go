package status

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// A global status holds this peer's answer, each other peer's, and a
// named "unreachable" entry for a peer that failed; a peer that answered
// nothing about the CID adds nothing.
func TestGlobalAsksEveryPeer(t *testing.T) {
	self, ok, down, silent := testkit.PeerID(t, 1), testkit.PeerID(t, 2), testkit.PeerID(t, 3), testkit.PeerID(t, 4)
	c := testkit.Cid(1)
	pinned := func(pid peer.ID) api.PinInfo {
		return api.PinInfo{Cid: c, Peer: pid, PinInfoShort: api.PinInfoShort{Status: api.StatusPinned}}
	}
	g := Global{Self: self,
		Local:    func(context.Context, api.Cid) api.PinInfo { return pinned(self) },
		Others:   func() []peer.ID { return []peer.ID{ok, down, silent} },
		Peername: func(pid peer.ID) string { return map[peer.ID]string{down: "down"}[pid] },
		Ask: func(_ context.Context, pid peer.ID, got api.Cid, fn func(api.PinInfo) error) error {
			switch {
			case !got.Equals(c.Cid):
				t.Errorf("asked %s about %s, want %s", pid, got, c)
			case pid == ok:
				return fn(pinned(ok))
			case pid == down:
				return errors.New("connection refused")
			}
			return nil
		}}
	gpi := g.Of(context.Background(), c)
	if len(gpi.PeerMap) != 3 {
		t.Fatalf("peer map %+v: want self, ok and down", gpi.PeerMap)
	}
	for _, pid := range []peer.ID{self, ok} {
		if pi := gpi.PeerMap[pid.String()]; pi.Status != api.StatusPinned {
			t.Errorf("%s: %+v, want pinned", pid, pi)
		}
	}
	if pi := gpi.PeerMap[down.String()]; pi.Status != api.StatusClusterError || pi.PeerName != "down" || !strings.Contains(pi.Error, "connection refused") {
		t.Errorf("down: %+v, want a named cluster_error saying why", pi)
	}
}
