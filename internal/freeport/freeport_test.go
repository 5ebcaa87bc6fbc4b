package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreFreeDistinctAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for slice := range slices {
		lo, hi := bounds(slice)
		for range 50 {
			p := Port(t, slice)
			if p < lo || p >= hi {
				t.Fatalf("slice %d: port %d outside [%d, %d)", slice, p, lo, hi)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	_, e2eHi := bounds(E2E)
	if peerLo, _ := bounds(Peer); e2eHi > peerLo {
		t.Fatalf("the slices overlap: e2e up to %d, peer from %d", e2eHi, peerLo)
	}
	// A port in use is skipped.
	lo, _ := bounds(Peer)
	held, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(next[Peer]))
	if err != nil {
		t.Skipf("cannot hold the next port: %v", err)
	}
	defer held.Close()
	_, hp, _ := net.SplitHostPort(held.Addr().String())
	if p := Port(t, Peer); strconv.Itoa(p) == hp || p < lo {
		t.Fatalf("got the port held by this test (%d)", p)
	}
}
