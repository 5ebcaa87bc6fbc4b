package p2p

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pinring/pinring/api"
)

// A follower asks a writer for its metrics table: it gets the names it
// asked for, every peer's; a request of too many names is reset, and an
// answer with metrics not asked for, or too many, is refused whole.
func TestAskMetricsGetsTheTableAndRefusesWhatWasNotAsked(t *testing.T) {
	hs := connectedHosts(t, 3)
	writer, follower, liar := hs[0], hs[1], hs[2]
	table := map[string][]api.Metric{
		"ping":     {{Name: "ping", Peer: writer.ID(), Value: "1", Valid: true}, {Name: "ping", Peer: follower.ID(), Value: "1"}},
		"queued":   {{Name: "queued", Peer: follower.ID(), Value: "3", Valid: true}},
		"reposize": {{Name: "reposize", Peer: writer.ID(), Value: "9"}},
	}
	ServeMetrics(writer, func(name string) []api.Metric { return table[name] })
	ctx := context.Background()
	got, err := AskMetrics(ctx, follower, writer.ID(), []string{"ping", "queued", "ping"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "ping" || got[2].Name != "queued" || got[2].Value != "3" || !got[2].Valid || got[1].Peer != follower.ID() {
		t.Fatalf("got %+v, want both pings and the queued figure", got)
	}

	// Too many names: the asker refuses before sending; a raw request
	// with them is reset by the server.
	names := strings.Split("a b c d e f g h i", " ")
	if _, err := AskMetrics(ctx, follower, writer.ID(), names); err == nil {
		t.Fatal("a request of 9 names was sent")
	}
	s, err := follower.NewStream(ctx, writer.ID(), Metrics.ID)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(s).Encode(metricsRequest{Names: names})
	s.CloseWrite()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(s); err == nil || len(b) != 0 {
		t.Fatalf("a request of 9 names was answered: %q, %v", b, err)
	}

	// A peer answering with a metric not asked for, or with one of no
	// peer, or with more than MaxMetrics: the answer is an error.
	for _, answer := range []func(enc *json.Encoder){
		func(enc *json.Encoder) { enc.Encode(api.Metric{Name: "freespace", Peer: liar.ID(), Value: "1e18"}) },
		func(enc *json.Encoder) { enc.Encode(api.Metric{Name: "ping", Value: "1"}) },
		func(enc *json.Encoder) {
			for range MaxMetrics + 1 {
				if enc.Encode(api.Metric{Name: "ping", Peer: liar.ID(), Value: "1"}) != nil {
					return
				}
			}
		},
	} {
		liar.SetStreamHandler(Metrics.ID, func(s network.Stream) {
			defer s.Close()
			var req metricsRequest
			json.NewDecoder(s).Decode(&req)
			answer(json.NewEncoder(s))
		})
		if ms, err := AskMetrics(ctx, follower, liar.ID(), []string{"ping"}); err == nil {
			t.Fatalf("a lying answer was taken: %d metrics", len(ms))
		}
	}
}
