// Package freeport finds loopback ports for tests that must name a port
// before a daemon binds it.
//
// A port the kernel hands out for :0 comes from its ephemeral range, and
// any listener or outgoing connection of another process (libp2p, kubo,
// the tests of another package running at the same time) may take it
// between the check and the bind. So ports come from below that range,
// where nothing asks for :0, each package from its own slice of it (so
// that two packages' tests running at once never pick the same port), and
// never the same port twice in a process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Slices of the range below the ephemeral ports, one per package that
// uses them.
const (
	E2E = iota
	Peer
	slices
)

const width = 4000 // ports in a slice

var (
	mu   sync.Mutex
	next = map[int]int{}
)

// Port returns a loopback port nobody listens on now, from slice.
func Port(tb testing.TB, slice int) int {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	lo, hi := bounds(slice)
	n, ok := next[slice]
	if !ok {
		n = lo + rand.IntN(hi-lo) // another run at the same time starts elsewhere
	}
	for range hi - lo {
		p := n
		if n++; n >= hi {
			n = lo
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			next[slice] = n
			return p
		}
	}
	// Nothing free there: let the kernel choose.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is "127.0.0.1:<Port>".
func Addr(tb testing.TB, slice int) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(tb, slice))
}

// bounds is slice's [lo, hi), below the first ephemeral port.
func bounds(slice int) (int, int) {
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				first = n
			}
		}
	}
	base := max(1024, first-slices*width)
	lo := base + slice*width
	return lo, min(lo+width, first)
}
