package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// costRing is n pins at rf 2 spread evenly over 4 peers, the first of them
// the one writer; peer 4 dropped every drop-th of its pins (1: all).
func costRing(b *testing.B, n, drop int) (*ring, []peer.ID) {
	ps := []peer.ID{testkit.PeerID(b, 1), testkit.PeerID(b, 2), testkit.PeerID(b, 3), testkit.PeerID(b, 4)}
	dropped := map[string]bool{}
	r := &ring{asked: map[string]int{}}
	held := 0
	for i := range n {
		p := api.Pin{Cid: testkit.Cid(i), Allocations: []peer.ID{ps[i%4], ps[(i+1)%4]}}
		r.pins = append(r.pins, p)
		if p.Allocations[0] == ps[3] || p.Allocations[1] == ps[3] {
			if held%drop == 0 {
				dropped[p.Cid.Key()] = true
			}
			held++
		}
	}
	r.holds = func(pid peer.ID, c api.Cid) bool { return pid != ps[3] || !dropped[c.Key()] }
	return r, ps
}

// BenchmarkRound is one audit round's own cost at 10 k and 100 k pins on 4
// peers (the writer in charge of all of them, the defaults: 16 pins
// sampled at each holder): the walk and sampling of the pinset, and the
// audits it makes (here answered in memory; each real one moves one
// root-to-leaf path, ~270 KiB for a 256 KiB-chunked file, and costs the
// prover as many local block reads).
func BenchmarkRound(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("pins=%d", n), func(b *testing.B) {
			r, ps := costRing(b, n, 1<<30)
			a := r.auditor(&testing.T{}, DefaultConfig(), ps[0])
			audits := 0
			for b.Loop() {
				audits += a.Round(context.Background())
			}
			b.ReportMetric(float64(audits)/float64(b.N), "audits/round")
		})
	}
}

// BenchmarkDetection counts the rounds (10 min each by default) until a
// peer that silently dropped 10 % or 100 % of its pins is first caught,
// until its first replica is moved (failed fail_rounds audits), and until
// it is suspended; the mean over b.N rings.
func BenchmarkDetection(b *testing.B) {
	for _, drop := range []int{10, 1} {
		b.Run(fmt.Sprintf("dropped=%d%%", 100/drop), func(b *testing.B) {
			var first, lost, suspended, runs float64
			for b.Loop() {
				r, ps := costRing(b, 100_000, drop)
				a := r.auditor(&testing.T{}, Config{Sample: 16, Deadline: config.Duration(time.Second), FailRounds: 3}, ps[0])
				f, l, s := 0, 0, 0
				for round := 1; round <= 2000 && (f == 0 || l == 0 || s == 0); round++ {
					a.Round(context.Background())
					if rec, _ := a.Peers.Get(ps[3]); f == 0 && rec.Failed > 0 {
						f = round
					}
					if l == 0 && len(a.Lost()) > 0 {
						l = round
					}
					if s == 0 && len(r.suspended) > 0 {
						s = round
					}
					if l == 0 && s > 0 {
						l = s // suspended: every replica moves (its records go)
					}
				}
				first, lost, suspended, runs = first+float64(f), lost+float64(l), suspended+float64(s), runs+1
			}
			b.ReportMetric(first/runs, "rounds-to-first-failure")
			b.ReportMetric(lost/runs, "rounds-to-first-move")
			b.ReportMetric(suspended/runs, "rounds-to-suspension")
		})
	}
}
