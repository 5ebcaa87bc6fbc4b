package repair

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
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
			got, ok := RebalanceFrom(tc.pin, full, moving, tc.batch)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("got %q %v, want %q", got, ok, tc.want)
			}
		})
	}
}

func TestPlanAndDecide(t *testing.T) {
	self, other := peer.ID("self"), peer.ID("other")
	// Every pin is this peer's to act on: it is the only live writer.
	v := View{Self: self, Live: []peer.ID{self}, Dead: map[peer.ID]bool{"dead": true},
		Full: map[peer.ID]bool{"full": true}, Room: 3, RebalanceBatch: 1}
	pin := func(i int, rmax int, allocs ...peer.ID) api.Pin {
		return api.Pin{Cid: testkit.Cid(i), Allocations: allocs, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: rmax}}
	}
	pl := NewPlan(v)
	pl.Consider(pin(1, -1))             // everywhere: never moves
	pl.Consider(pin(2, 2, "a", "b"))    // healthy
	pl.Consider(pin(3, 2, "a", "dead")) // repair
	pl.Consider(pin(4, 2, "a", "full")) // rebalance
	pl.Consider(pin(5, 2, "b", "full")) // batch of 1 used up
	pl.Consider(pin(6, 3, "a", "b"))    // under-replicated with room
	pl.Consider(api.Pin{Cid: testkit.Cid(7), Type: api.ShardType, Allocations: []peer.ID{"dead"},
		PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1}}) // a shard: repaired apart
	if !pl.Found {
		t.Fatal("finite pins seen, Found false")
	}
	var got []string
	for _, m := range pl.Moves {
		got = append(got, fmt.Sprintf("%s rebalance=%v keep=%v", m.Pin.Cid, m.Rebalance, m.Keep))
	}
	want := []string{
		fmt.Sprintf("%s rebalance=false keep=[%s]", testkit.Cid(3), peer.ID("a")),
		fmt.Sprintf("%s rebalance=true keep=[%s]", testkit.Cid(4), peer.ID("a")),
		fmt.Sprintf("%s rebalance=false keep=[%s %s]", testkit.Cid(6), peer.ID("a"), peer.ID("b")),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("moves\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Another peer in charge: it acts, not this one.
	v.Live = []peer.ID{self, other}
	mine := 0
	for i := range 40 {
		pl := NewPlan(v)
		pl.Consider(pin(100+i, 2, "a", "dead"))
		mine += len(pl.Moves)
	}
	if mine == 0 || mine == 40 {
		t.Fatalf("this peer in charge of %d of 40 pins, want about half", mine)
	}

	repairMove, rebalanceMove := pl2moves(t, v)
	errNoRoom := errors.New("no room")
	for _, tc := range []struct {
		name   string
		m      Move
		allocs []peer.ID
		err    error
		want   []peer.ID
		write  bool
	}{
		{"repaired", repairMove, []peer.ID{"a", "c"}, nil, []peer.ID{"a", "c"}, true},
		{"repair nowhere to go: the dead peer is dropped", repairMove, nil, errNoRoom, []peer.ID{"a"}, true},
		{"rebalanced", rebalanceMove, []peer.ID{"a", "c"}, nil, []peer.ID{"a", "c"}, true},
		{"rebalance nowhere to go: stays", rebalanceMove, nil, errNoRoom, nil, false},
		{"rebalance to fewer peers: stays", rebalanceMove, []peer.ID{"a"}, nil, nil, false},
		{"the same peers: nothing to write", rebalanceMove, []peer.ID{"full", "a"}, nil, nil, false},
	} {
		next, write := Decide(tc.m, tc.allocs, tc.err)
		if write != tc.write || !slices.Equal(next, tc.want) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, next, write, tc.want, tc.write)
		}
	}
}

// pl2moves plans one repair (off "dead") and one rebalance (off "full").
func pl2moves(t *testing.T, v View) (Move, Move) {
	t.Helper()
	v.Live = []peer.ID{v.Self}
	pl := NewPlan(v)
	pl.Consider(api.Pin{Cid: testkit.Cid(200), Allocations: []peer.ID{"a", "dead"}, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 2}})
	pl.Consider(api.Pin{Cid: testkit.Cid(201), Allocations: []peer.ID{"a", "full"}, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 2}})
	if len(pl.Moves) != 2 {
		t.Fatalf("planned %d moves", len(pl.Moves))
	}
	return pl.Moves[0], pl.Moves[1]
}

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	self := peer.ID("self")
	e := NewExpiry(now, self, []peer.ID{self})
	for i, at := range []time.Time{{}, now.Add(-time.Second), now.Add(time.Hour), now.Add(time.Minute)} {
		e.Consider(api.Pin{Cid: testkit.Cid(300 + i), PinOptions: api.PinOptions{ExpireAt: at}})
	}
	if len(e.Remove) != 1 || !e.Remove[0].Equals(testkit.Cid(301).Cid) || !e.Soonest.Equal(now.Add(time.Minute)) {
		t.Fatalf("remove %v, soonest %s", e.Remove, e.Soonest)
	}
	// Not in charge: it expires at another peer, and counts as staying.
	e = NewExpiry(now, self, []peer.ID{"other"})
	e.Consider(api.Pin{Cid: testkit.Cid(301), PinOptions: api.PinOptions{ExpireAt: now.Add(-time.Second)}})
	if len(e.Remove) != 0 {
		t.Fatalf("removed a pin another peer is in charge of: %v", e.Remove)
	}
}
