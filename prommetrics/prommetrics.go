// Package prommetrics exposes a peer's figures to Prometheus: a registry of
// its own (two peers in one process do not collide), gauges and counters
// read from the peer's components when scraped (nothing is kept up to date
// in the background), the time each pin took, and the REST API's latency.
package prommetrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinring/pinring/api"
)

// Sources are where the figures are read at scrape time. Each is called
// from the scraping goroutine and must be safe for that.
type Sources struct {
	// Pins is the size of the pinset as the tracker last saw it.
	Pins func() int
	// ByStatus counts this peer's pins by tracker status; Queued the
	// operations outstanding.
	ByStatus func() map[api.TrackerStatus]int
	Queued   func() int
	// PeersSeen and PeersConnected count cluster peers.
	PeersSeen, PeersConnected func() int
	// Heartbeats are the metric heartbeats received and the peers whose
	// heartbeats expired, since start.
	Heartbeats func() (received, expired int64)
	// Journal are the journal's syncs and the writes they made durable.
	Journal func() (syncs, writes uint64)
	// Unpacked are acknowledged changes not yet in a delta.
	Unpacked func() int
	// DAG is the pinset DAG's heads, height and sync queue.
	DAG func() (heads int, height uint64, queued int)
	// StoreBytes is the pinset store's size on disk (-1: unknown).
	StoreBytes func() int64
	// Epoch is the pinset's current epoch (ADR 9), when this peer switched
	// to it (zero: it started in it), and when it last dropped an old one.
	Epoch func() (epoch uint64, since, lastDropped time.Time)
	// History is the current epoch's set entries at the last count:
	// elements and tombstones, and live entries (ok false: not counted
	// yet).
	History func() (history, live int, ok bool)
	// Audits are this peer's audits passed and failed since start, the
	// peers it suspended, and the peers whose last audit failed.
	Audits func() (passed, failed, suspended uint64, failing int)
}

// Metrics is one peer's registry.
type Metrics struct {
	reg         *prometheus.Registry
	pinDuration prometheus.Histogram
	apiLatency  *prometheus.HistogramVec
}

// trackedStatuses are the statuses counted on a peer.
var trackedStatuses = []api.TrackerStatus{api.StatusPinned, api.StatusPinQueued, api.StatusPinning,
	api.StatusPinError, api.StatusUnpinQueued, api.StatusUnpinning, api.StatusUnpinError, api.StatusUnexpectedlyUnpinned}

// New builds the registry over s.
func New(s Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
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
	count := func(f func() int) func() float64 { return func() float64 { return float64(f()) } }
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.pinDuration, m.apiLatency,
		gauge("pins", "Pins in the cluster's pinset (as of this peer's last recover pass).", count(s.Pins)),
		&statusCollector{counts: s.ByStatus, desc: prometheus.NewDesc("pinring_pins_by_status",
			"This peer's pins by tracker status.", []string{"status"}, nil)},
		gauge("queue_length", "Pin and unpin operations outstanding on this peer.", count(s.Queued)),
		gauge("peers_seen", "Cluster peers this peer has heard from.", count(s.PeersSeen)),
		gauge("peers_connected", "Cluster peers connected now.", count(s.PeersConnected)),
		counter("metrics_received_total", "Metric heartbeats received from other peers.", func() float64 {
			r, _ := s.Heartbeats()
			return float64(r)
		}),
		counter("metrics_expired_total", "Peers whose heartbeats expired (alerts).", func() float64 {
			_, e := s.Heartbeats()
			return float64(e)
		}),
		counter("journal_syncs_total", "fsyncs of the pinset journal that made writes durable.", func() float64 {
			syncs, _ := s.Journal()
			return float64(syncs)
		}),
		counter("journal_writes_total", "Pinset writes made durable in the journal and acknowledged.", func() float64 {
			_, writes := s.Journal()
			return float64(writes)
		}),
		gauge("state_unpacked", "Acknowledged pinset changes not yet packed into a delta (not yet announced to other peers).", count(s.Unpacked)),
		gauge("crdt_heads", "Heads of the pinset's Merkle-DAG.", func() float64 {
			h, _, _ := s.DAG()
			return float64(h)
		}),
		gauge("crdt_height", "Height of the pinset's Merkle-DAG.", func() float64 {
			_, h, _ := s.DAG()
			return float64(h)
		}),
		&auditCollector{audits: s.Audits,
			total: prometheus.NewDesc("pinring_audits_total", "Audits this peer made, by result.", []string{"result"}, nil),
			suspended: prometheus.NewDesc("pinring_audit_suspended_total",
				"Peers this peer suspended (revoked) for failing every audit of audit.fail_rounds rounds in a row.", nil, nil),
			failing: prometheus.NewDesc("pinring_audit_failing_peers", "Peers whose last audit by this peer failed.", nil, nil)},
		gauge("store_bytes", "Bytes the pinset store holds on disk (the live pinset and its history; -1: unknown).", func() float64 {
			return float64(s.StoreBytes())
		}),
		gauge("crdt_sync_queue", "DAG jobs waiting to be merged: how far behind the sync is.", func() float64 {
			_, _, q := s.DAG()
			return float64(q)
		}),
		gauge("state_epoch", "The pinset's current epoch (a new one starts from the live pins only).", func() float64 {
			e, _, _ := s.Epoch()
			return float64(e)
		}),
		gauge("state_epoch_last_drop_timestamp_seconds", "When this peer last dropped an old epoch of the pinset (0: never since start).", func() float64 {
			_, _, t := s.Epoch()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
		gauge("state_history_entries", "Set entries of the current epoch that are history: elements ever added and tombstones (-1: not counted yet).", func() float64 {
			h, _, ok := s.History()
			if !ok {
				return -1
			}
			return float64(h)
		}),
		gauge("state_live_entries", "Live entries of the current epoch at the last count (-1: not counted yet).", func() float64 {
			_, l, ok := s.History()
			if !ok {
				return -1
			}
			return float64(l)
		}),
	)
	return m
}

// Handler serves the registry (GET /metrics).
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// PinDone records how long a pin took to reach kubo.
func (m *Metrics) PinDone(d time.Duration) { m.pinDuration.Observe(d.Seconds()) }

// Request records one REST API request's latency.
func (m *Metrics) Request(route string, code int, d time.Duration) {
	m.apiLatency.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
}

// statusCollector reports the counts by status at scrape time.
type statusCollector struct {
	counts func() map[api.TrackerStatus]int
	desc   *prometheus.Desc
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.counts()
	for _, st := range trackedStatuses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// auditCollector reports the audit figures at scrape time, read once.
type auditCollector struct {
	audits                    func() (passed, failed, suspended uint64, failing int)
	total, suspended, failing *prometheus.Desc
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.suspended
	ch <- c.failing
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	passed, failed, suspended, failing := c.audits()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(passed), "passed")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.suspended, prometheus.CounterValue, float64(suspended))
	ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, float64(failing))
}
