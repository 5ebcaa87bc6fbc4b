package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pinring/pinring/api"
)

// GET /health answers 503 for two reasons: the report of a peer whose
// kubo is down (a Health), and a peer still starting (an error saying
// what it does). Health tells them apart.
func TestHealthTellsAStartingPeerFromAnUnhealthyOne(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	cl, err := New(srv.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	body = `{"healthy":false,"kubo":{"ok":false,"error":"connection refused"},"alone":false,"connected_peers":2,"cluster_peers":[]}`
	h, err := cl.Health(ctx)
	if err != nil || h.Healthy || h.Kubo.Error != "connection refused" || h.ConnectedPeers != 2 {
		t.Fatalf("unhealthy report: %+v %v", h, err)
	}

	body = `{"code":503,"message":"the peer is starting: opening the pinset; try again in a moment"}`
	_, err = cl.Health(ctx)
	var e api.Error
	if !errors.As(err, &e) || e.Code != 503 || e.Message != "the peer is starting: opening the pinset; try again in a moment" {
		t.Fatalf("starting peer: %v", err)
	}
}
