package peer

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/restapi"
)

// promMetrics are the peer's Prometheus metrics, in a registry of its own
// (no global state: two peers in one process do not collide).
type promMetrics struct {
	reg         *prometheus.Registry
	pinDuration prometheus.Histogram
	apiLatency  *prometheus.HistogramVec
}

// trackedStatuses are the statuses counted on this peer.
var trackedStatuses = []api.TrackerStatus{api.StatusPinned, api.StatusPinQueued, api.StatusPinning,
	api.StatusPinError, api.StatusUnpinQueued, api.StatusUnpinning, api.StatusUnpinError, api.StatusUnexpectedlyUnpinned}

// newPromMetrics builds the registry; the gauges read the peer when
// scraped, so nothing is kept up to date in the background.
func newPromMetrics(p *Peer) *promMetrics {
	m := &promMetrics{reg: prometheus.NewRegistry()}
	m.pinDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "pinring", Name: "pin_duration_seconds",
		Help:    "Time from a pin operation's creation on this peer to kubo holding the pin.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms … ~44 min
	})
	m.apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pinring", Name: "api_request_duration_seconds",
		Help:    "REST API request latency by route and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "code"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "pinring", Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "pinring", Name: name, Help: help}, f)
	}
	bg := func() context.Context { return p.lifetime }
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.pinDuration, m.apiLatency,
		gauge("pins", "Pins in the cluster's pinset (as of this peer's last recover pass).", func() float64 {
			return float64(p.tracker.Total())
		}),
		&statusCollector{p: p, desc: prometheus.NewDesc("pinring_pins_by_status",
			"This peer's pins by tracker status.", []string{"status"}, nil)},
		gauge("queue_length", "Pin and unpin operations outstanding on this peer.", func() float64 {
			_, queued := p.tracker.Counts()
			return float64(queued)
		}),
		gauge("peers_seen", "Cluster peers this peer has heard from.", func() float64 {
			return float64(p.peers.Len())
		}),
		gauge("peers_connected", "Cluster peers connected now.", func() float64 { return float64(p.connectedPeers()) }),
		counter("metrics_received_total", "Metric heartbeats received from other peers.", func() float64 {
			r, _ := p.monitor.Counts()
			return float64(r)
		}),
		counter("metrics_expired_total", "Peers whose heartbeats expired (alerts).", func() float64 {
			_, e := p.monitor.Counts()
			return float64(e)
		}),
		counter("journal_syncs_total", "fsyncs of the pinset journal that made writes durable.", func() float64 {
			syncs, _ := p.state.JournalStats()
			return float64(syncs)
		}),
		counter("journal_writes_total", "Pinset writes made durable in the journal and acknowledged.", func() float64 {
			_, writes := p.state.JournalStats()
			return float64(writes)
		}),
		gauge("state_unpacked", "Acknowledged pinset changes not yet packed into a delta (not yet announced to other peers).", func() float64 {
			return float64(p.state.Unpacked())
		}),
		gauge("crdt_heads", "Heads of the pinset's Merkle-DAG.", func() float64 {
			h, _, _ := p.state.Stats(bg())
			return float64(h)
		}),
		gauge("crdt_height", "Height of the pinset's Merkle-DAG.", func() float64 {
			_, h, _ := p.state.Stats(bg())
			return float64(h)
		}),
		gauge("crdt_sync_queue", "DAG jobs waiting to be merged: how far behind the sync is.", func() float64 {
			_, _, q := p.state.Stats(bg())
			return float64(q)
		}),
	)
	return m
}

// extras plug the metrics into the REST API: GET /metrics and the latency
// of every request.
func (m *promMetrics) extras() restapi.Extras {
	return restapi.Extras{
		Handlers: map[string]http.Handler{"GET /metrics": promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})},
		Observe: func(route string, code int, d time.Duration) {
			m.apiLatency.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
		},
	}
}

// statusCollector reports the tracker's counts by status at scrape time.
type statusCollector struct {
	p    *Peer
	desc *prometheus.Desc
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.p.tracker.StatusCounts()
	for _, st := range trackedStatuses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
