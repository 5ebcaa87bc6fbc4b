package status

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/pubsubmon"
)

// SummaryMetrics are the metrics a Summary is made of.
var SummaryMetrics = []string{pubsubmon.MetricPing, pubsubmon.MetricQueued, pubsubmon.MetricAbsorbed}

// FromHeartbeats is Global.Summary read from m's latest metrics, once,
// when first asked.
func FromHeartbeats(m *pubsubmon.Monitor) func(peer.ID) (Summary, bool) {
	return FromMetrics(func() []api.Metric {
		var out []api.Metric
		for _, name := range SummaryMetrics {
			out = append(out, m.Latest(name)...)
		}
		return out
	})
}

// FromMetrics is Global.Summary made from the metrics fetch returns (the
// latest SummaryMetrics of every peer, as a monitor's Latest gives them),
// fetched once, when first asked. A peer is known once its ping is; a
// figure it did not send counts as work outstanding (Queued 1) or nothing
// taken in (Absorbed 0).
func FromMetrics(fetch func() []api.Metric) func(peer.ID) (Summary, bool) {
	var once sync.Once
	var table map[peer.ID]Summary
	return func(pid peer.ID) (Summary, bool) {
		once.Do(func() { table = summariesOf(fetch()) })
		s, ok := table[pid]
		return s, ok
	}
}

func summariesOf(ms []api.Metric) map[peer.ID]Summary {
	out := map[peer.ID]Summary{}
	named := func(name string) []api.Metric {
		return slices.DeleteFunc(slices.Clone(ms), func(mt api.Metric) bool { return mt.Name != name })
	}
	for _, mt := range named(pubsubmon.MetricPing) {
		out[mt.Peer] = Summary{Alive: mt.Valid, Queued: 1, At: time.Unix(0, mt.ReceivedAt)}
	}
	for _, mt := range named(pubsubmon.MetricQueued) {
		if s, ok := out[mt.Peer]; ok {
			if n, err := strconv.Atoi(mt.Value); err == nil && n >= 0 {
				s.Queued = n
			}
			out[mt.Peer] = s
		}
	}
	for _, mt := range named(pubsubmon.MetricAbsorbed) {
		if s, ok := out[mt.Peer]; ok {
			if n, err := strconv.ParseInt(mt.Value, 10, 64); err == nil {
				s.Absorbed = n
			}
			out[mt.Peer] = s
		}
	}
	return out
}
