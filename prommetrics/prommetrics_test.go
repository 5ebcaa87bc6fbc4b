package prommetrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
)

// A scrape reads every source then, and shows what was observed.
func TestScrapeReadsTheSources(t *testing.T) {
	pins := 7
	m := New(Sources{
		Pins: func() int { return pins },
		ByStatus: func() map[api.TrackerStatus]int {
			return map[api.TrackerStatus]int{api.StatusPinned: 3, api.StatusPinError: 1}
		},
		Queued:         func() int { return 2 },
		PeersSeen:      func() int { return 5 },
		PeersConnected: func() int { return 4 },
		Heartbeats:     func() (int64, int64) { return 100, 1 },
		Journal:        func() (uint64, uint64) { return 10, 250 },
		Unpacked:       func() int { return 6 },
		DAG:            func() (int, uint64, int) { return 2, 99, 8 },
		StoreBytes:     func() int64 { return 123456 },
		Audits:         func() (uint64, uint64, uint64, int) { return 40, 3, 1, 2 },
		Epoch: func() (uint64, time.Time, time.Time) {
			return 3, time.Unix(1000, 0), time.Unix(2000, 0)
		},
		History: func() (int, int, bool) { return 25000, 10000, true },
	})
	m.PinDone(30 * time.Millisecond)
	m.Request("GET /pins", 200, time.Millisecond)
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	out := scrape()
	for _, want := range []string{
		"pinring_pins 7", `pinring_pins_by_status{status="pinned"} 3`, `pinring_pins_by_status{status="pin_error"} 1`,
		`pinring_pins_by_status{status="pinning"} 0`, "pinring_queue_length 2", "pinring_peers_seen 5",
		"pinring_peers_connected 4", "pinring_metrics_received_total 100", "pinring_metrics_expired_total 1",
		"pinring_journal_syncs_total 10", "pinring_journal_writes_total 250", "pinring_state_unpacked 6",
		`pinring_audits_total{result="passed"} 40`, `pinring_audits_total{result="failed"} 3`,
		"pinring_audit_suspended_total 1", "pinring_audit_failing_peers 2",
		"pinring_crdt_heads 2", "pinring_crdt_height 99", "pinring_crdt_sync_queue 8", "pinring_store_bytes 123456",
		"pinring_state_epoch 3", "pinring_state_epoch_last_drop_timestamp_seconds 2000",
		"pinring_state_history_entries 25000", "pinring_state_live_entries 10000",
		"pinring_pin_duration_seconds_count 1", `pinring_api_request_duration_seconds_count{code="200",route="GET /pins"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want+" ") {
			t.Errorf("scrape lacks %q", want)
		}
	}
	pins = 8
	if !strings.Contains(scrape(), "pinring_pins 8\n") {
		t.Fatal("a second scrape did not read the pinset again")
	}
}
