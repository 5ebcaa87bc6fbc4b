package status

import (
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/pubsubmon"
)

// FromHeartbeats is Global.Summary read from m's latest metrics, once,
// when first asked. A peer is known once its ping is; a figure it did not
// send counts as work outstanding (Queued 1) or nothing taken in
// (Absorbed 0).
func FromHeartbeats(m *pubsubmon.Monitor) func(peer.ID) (Summary, bool) {
	var once sync.Once
	var table map[peer.ID]Summary
	return func(pid peer.ID) (Summary, bool) {
		once.Do(func() { table = summariesOf(m) })
		s, ok := table[pid]
		return s, ok
	}
}

func summariesOf(m *pubsubmon.Monitor) map[peer.ID]Summary {
	out := map[peer.ID]Summary{}
	for _, mt := range m.Latest(pubsubmon.MetricPing) {
		out[mt.Peer] = Summary{Alive: mt.Valid, Queued: 1, At: time.Unix(0, mt.ReceivedAt)}
	}
	for _, mt := range m.Latest(pubsubmon.MetricQueued) {
		if s, ok := out[mt.Peer]; ok {
			if n, err := strconv.Atoi(mt.Value); err == nil && n >= 0 {
				s.Queued = n
			}
			out[mt.Peer] = s
		}
	}
	for _, mt := range m.Latest(pubsubmon.MetricAbsorbed) {
		if s, ok := out[mt.Peer]; ok {
			if n, err := strconv.ParseInt(mt.Value, 10, 64); err == nil {
				s.Absorbed = n
			}
			out[mt.Peer] = s
		}
	}
	return out
}
