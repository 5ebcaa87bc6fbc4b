package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// source streams the given statuses of CIDs in key order, then fails with
// err (nil: ends cleanly).
func source(pid peer.ID, st map[int]api.TrackerStatus, err error) Source {
	return Source{Peer: pid, Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
		var pis []api.PinInfo
		for i, s := range st {
			pis = append(pis, api.PinInfo{Cid: testkit.Cid(i), Peer: pid, PinInfoShort: api.PinInfoShort{Status: s}})
		}
		slices.SortFunc(pis, func(a, b api.PinInfo) int { return strings.Compare(a.Cid.Key(), b.Cid.Key()) })
		for _, pi := range pis {
			if err := fn(pi); err != nil {
				return err
			}
		}
		return err
	}}
}

func unreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	return api.PinInfo{Cid: c, Peer: pid, PinInfoShort: api.PinInfoShort{Status: api.StatusClusterError, Error: err.Error()}}
}

func merge(t *testing.T, filter api.StatusFilter, srcs ...Source) ([]api.GlobalPinInfo, error) {
	t.Helper()
	var out []api.GlobalPinInfo
	err := Merge(context.Background(), srcs, filter, unreachable, func(g api.GlobalPinInfo) error {
		out = append(out, g)
		return nil
	})
	return out, err
}

func TestMerge(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	out, err := merge(t, nil,
		source(a, map[int]api.TrackerStatus{1: api.StatusPinned, 2: api.StatusPinned, 3: api.StatusPinning}, nil),
		source(b, map[int]api.TrackerStatus{2: api.StatusPinned, 4: api.StatusRemote}, nil),
		source(c, nil, errors.New("gone")))
	if err != nil {
		t.Fatal(err)
	}
	// One per CID, in key order, each with every peer that spoke of it,
	// and c, which failed at once, unreachable on all of them.
	var got []string
	for _, g := range out {
		got = append(got, fmt.Sprintf("%d peers", len(g.PeerMap)))
		if g.PeerMap[c.String()].Status != api.StatusClusterError {
			t.Errorf("%s: the failed peer shows %v", g.Cid, g.PeerMap[c.String()])
		}
	}
	if len(out) != 4 || !slices.IsSortedFunc(out, func(x, y api.GlobalPinInfo) int { return strings.Compare(x.Cid.Key(), y.Cid.Key()) }) {
		t.Fatalf("merged %d, in order %v", len(out), got)
	}
	for _, g := range out {
		if g.Cid.Equals(testkit.Cid(2).Cid) && len(g.PeerMap) != 3 {
			t.Fatalf("CID 2: %v, want a, b and c", g.PeerMap)
		}
	}

	// A filter keeps the CIDs with a peer that passes, and only those peers.
	f, _ := api.ParseStatusFilter("pinning")
	out, err = merge(t, f, source(a, map[int]api.TrackerStatus{1: api.StatusPinned, 3: api.StatusPinning}, nil),
		source(b, map[int]api.TrackerStatus{3: api.StatusPinned}, nil))
	if err != nil || len(out) != 1 || len(out[0].PeerMap) != 1 || out[0].PeerMap[a.String()].Status != api.StatusPinning {
		t.Fatalf("filtered: %+v, %v", out, err)
	}

	// The asking peer's own listing failing makes the answer incomplete.
	if _, err := merge(t, nil, source(a, map[int]api.TrackerStatus{1: api.StatusPinned}, errors.New("disk")), source(b, nil, nil)); err == nil {
		t.Fatal("our own listing failed, and Merge said nothing")
	}
	// fn's error stops the merge and is returned.
	stop := errors.New("client gone")
	err = Merge(context.Background(), []Source{source(a, map[int]api.TrackerStatus{1: api.StatusPinned, 2: api.StatusPinned}, nil)}, nil, unreachable,
		func(api.GlobalPinInfo) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("fn's error: %v", err)
	}
}
