package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Metrics asks a peer (a writer) for the latest metrics of every peer it
// hears, of the names asked. The request is one JSON object; the answer is
// api.Metric objects, one JSON document each, ending at EOF.

type metricsRequest struct {
	Names []string `json:"names"`
}

// MaxMetricNames bounds the names one Metrics request asks for, and
// MaxMetrics the metrics one answer may hold (the asker stops reading
// beyond): a heartbeat table of 4,096 peers (monitor.max_peers) and four
// names is under it.
const (
	MaxMetricNames   = 8
	MaxMetrics       = 1 << 15
	maxMetricsAnswer = 64 << 20 // bytes
)

// ServeMetrics answers Metrics requests on h with latest (the monitor's
// Latest: a metric's Valid as this peer sees it now).
func ServeMetrics(h host.Host, latest func(name string) []api.Metric) {
	pr := Metrics
	Serve(h, pr, nil, func(s network.Stream) {
		defer s.Close()
		var req metricsRequest
		s.SetReadDeadline(time.Now().Add(pr.Idle))
		if err := json.NewDecoder(io.LimitReader(s, pr.MaxRequest)).Decode(&req); err != nil || len(req.Names) > MaxMetricNames {
			s.Reset()
			return
		}
		w := bufio.NewWriterSize(s, 32<<10)
		enc := json.NewEncoder(w)
		sent := 0
		for _, name := range slices.Compact(slices.Sorted(slices.Values(req.Names))) {
			for _, mt := range latest(name) {
				if sent++; sent > MaxMetrics {
					break
				}
				s.SetWriteDeadline(time.Now().Add(pr.Idle))
				if err := enc.Encode(mt); err != nil {
					s.Reset()
					return
				}
			}
		}
		if err := w.Flush(); err != nil {
			s.Reset()
		}
	}, nil)
}

// AskMetrics asks pid, already connected, over h for its latest metrics
// called names, every peer's. An answer of more than MaxMetrics metrics,
// or with a name not asked, is an error.
func AskMetrics(ctx context.Context, h host.Host, pid peer.ID, names []string) ([]api.Metric, error) {
	if len(names) > MaxMetricNames {
		return nil, fmt.Errorf("at most %d metric names a request", MaxMetricNames)
	}
	s, done, err := request(ctx, h, pid, Metrics, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(metricsRequest{Names: names})
	})
	if err != nil {
		return nil, err
	}
	defer done()
	defer s.Close()
	var out []api.Metric
	err = readEach(s, io.LimitReader(s, maxMetricsAnswer), Metrics.Idle, func(mt api.Metric) error {
		if !slices.Contains(names, mt.Name) || mt.Peer == "" {
			return fmt.Errorf("peer %s answered with a metric not asked for (%q of %q)", pid, mt.Name, mt.Peer)
		}
		if len(out) == MaxMetrics {
			return fmt.Errorf("peer %s answered with more than %d metrics", pid, MaxMetrics)
		}
		out = append(out, mt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
