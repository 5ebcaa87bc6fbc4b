package peer

import (
	"net/http"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/prommetrics"
	"github.com/pinring/pinring/restapi"
)

// newPromMetrics reads the peer's components for Prometheus. It is made
// before them: each source reads its component when scraped, once the peer
// is ready (until then the REST API answers 503).
func newPromMetrics(p *Peer) *prommetrics.Metrics {
	return prommetrics.New(prommetrics.Sources{
		Pins:           func() int { return p.tracker.Total() },
		ByStatus:       func() map[api.TrackerStatus]int { return p.tracker.StatusCounts() },
		Queued:         func() int { _, q := p.tracker.Counts(); return q },
		PeersSeen:      func() int { return p.peers.Len() },
		PeersConnected: func() int { return len(p.ring.ConnectedTo()) },
		Heartbeats:     func() (int64, int64) { return p.monitor.Counts() },
		Journal:        func() (uint64, uint64) { return p.st().JournalStats() },
		Unpacked:       func() int { return p.st().Unpacked() },
		DAG:            func() (int, uint64, int) { return p.st().Stats(p.lifetime) },
		StoreBytes:     func() int64 { return p.st().StoreBytes() },
		Epoch: func() (uint64, time.Time, time.Time) {
			r := p.run.Load()
			if r == nil {
				return 0, time.Time{}, time.Time{}
			}
			var dropped time.Time
			if ns := p.lastRetired.Load(); ns > 0 {
				dropped = time.Unix(0, ns)
			}
			return r.cur.N(), r.since, dropped
		},
		History: func() (int, int, bool) {
			if h := p.history.Load(); h != nil {
				return h.Elements + h.Tombstones, h.Live, true
			}
			return 0, 0, false
		},
		Audits: func() (uint64, uint64, uint64, int) {
			passed, failed, suspended := p.auditor.Counts()
			return passed, failed, suspended, len(p.auditor.Failing())
		},
	})
}

// promExtras plug the metrics into the REST API: GET /metrics and the
// latency of every request.
func promExtras(m *prommetrics.Metrics) restapi.Extras {
	return restapi.Extras{Handlers: map[string]http.Handler{"GET /metrics": m.Handler()}, Observe: m.Request}
}
