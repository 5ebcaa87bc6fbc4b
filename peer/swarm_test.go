package peer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/ipfsclient"
)

// Two kubos dialing each other at once both fail the handshake; the next
// try finds them connected. SwarmConnect tries again, a bounded number of
// times.
func TestSwarmConnectTriesAgain(t *testing.T) {
	for _, failures := range []int32{2, 100} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v0/swarm/connect" {
				http.NotFound(w, r)
				return
			}
			if calls.Add(1) <= failures {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprintln(w, `{"Message":"connect 12D3KooW failure: failed to negotiate security protocol","Code":0,"Type":"error"}`)
				return
			}
			fmt.Fprintln(w, `{"Strings":["connect 12D3KooW success"]}`)
		}))
		cfg := ipfsclient.DefaultConfig()
		cfg.API = strings.TrimPrefix(srv.URL, "http://")
		cl, err := ipfsclient.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := &Peer{ipfs: cl}
		addr := ma.StringCast("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
		err = p.SwarmConnect(context.Background(), addr)
		switch {
		case failures == 2 && (err != nil || calls.Load() != 3):
			t.Fatalf("two failures then success: %v after %d calls", err, calls.Load())
		case failures == 100 && (err == nil || !strings.Contains(err.Error(), "security protocol") || calls.Load() != swarmConnectTries):
			t.Fatalf("always failing: %v after %d calls, want the error after %d", err, calls.Load(), swarmConnectTries)
		}
		srv.Close()
	}
}
