package peer

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

func TestRebalanceFromPicksAFullPeerWithinTheBatch(t *testing.T) {
	pin := func(rmax int, allocs ...peer.ID) *api.Pin {
		return &api.Pin{Allocations: allocs, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: rmax}}
	}
	full := map[peer.ID]bool{"f": true, "g": true}
	for _, tc := range []struct {
		name   string
		pin    *api.Pin
		moving map[peer.ID]int
		batch  int
		want   peer.ID
	}{
		{"no full peer holds it", pin(2, "a", "b"), nil, 4, ""},
		{"a full peer holds it", pin(2, "a", "f"), nil, 4, "f"},
		{"batch used up for f, g holds it too", pin(2, "f", "g"), map[peer.ID]int{"f": 4}, 4, "g"},
		{"batch used up", pin(2, "a", "f"), map[peer.ID]int{"f": 4}, 4, ""},
		{"rebalancing off", pin(2, "a", "f"), nil, 0, ""},
		{"replicated everywhere: nothing to move", pin(-1), nil, 4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moving := tc.moving
			if moving == nil {
				moving = map[peer.ID]int{}
			}
			got, ok := rebalanceFrom(tc.pin, full, moving, tc.batch)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("got %q %v, want %q", got, ok, tc.want)
			}
		})
	}
}

func TestIsFull(t *testing.T) {
	for _, tc := range []struct {
		size, max uint64
		want      bool
	}{
		{899, 1000, false}, {900, 1000, true}, {2000, 1000, true}, {5, 0, false},
	} {
		if got := isFull(api.IPFSRepoStat{RepoSize: tc.size, StorageMax: tc.max}, 0.9); got != tc.want {
			t.Errorf("%d of %d: %v, want %v", tc.size, tc.max, got, tc.want)
		}
	}
}
