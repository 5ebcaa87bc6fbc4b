package ipfsclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

const testCid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

func fakeKubo(t *testing.T, h http.HandlerFunc) *Client {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.API = strings.TrimPrefix(srv.URL, "http://")
	cfg.PinTimeout = config.Duration(300 * time.Millisecond)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPinTimeoutCountsFromLastProgress(t *testing.T) {
	// Progress every 100ms for 1s: longer than the 300ms timeout in total,
	// but never stalled, so the pin succeeds.
	c := fakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v0/pin/add" || r.URL.Query().Get("progress") != "true" {
			t.Errorf("unexpected call %s", r.URL)
		}
		for i := 1; i <= 10; i++ {
			fmt.Fprintf(w, `{"Progress":%d}`+"\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(w, `{"Pins":["%s"]}`+"\n", testCid)
	})
	ci, _ := api.ParseCid(testCid)
	var last uint64
	if err := c.Pin(context.Background(), ci, api.PinModeRecursive, func(n uint64) { last = n }); err != nil {
		t.Fatalf("pin with steady progress failed: %v", err)
	}
	if last != 10 {
		t.Fatalf("last progress %d, want 10", last)
	}
}

func TestPinStallTimesOut(t *testing.T) {
	c := fakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"Progress":1}`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	ci, _ := api.ParseCid(testCid)
	start := time.Now()
	err := c.Pin(context.Background(), ci, api.PinModeRecursive, nil)
	if !errors.Is(err, ErrPinTimeout) {
		t.Fatalf("stalled pin = %v, want ErrPinTimeout", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("timeout did not cancel the stalled request")
	}
}

func TestKuboErrorReachesCaller(t *testing.T) {
	c := fakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		fmt.Fprintln(w, `{"Message":"pin: merkledag: not found","Code":0,"Type":"error"}`)
	})
	ci, _ := api.ParseCid(testCid)
	err := c.Unpin(context.Background(), ci)
	var ke *KuboError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "merkledag: not found") {
		t.Fatalf("error = %v, want kubo's message", err)
	}
}

func TestPinLsStreams(t *testing.T) {
	c := fakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("type") != "direct" || r.URL.Query().Get("stream") != "true" {
			t.Errorf("bad query %s", r.URL.RawQuery)
		}
		for range 3 {
			fmt.Fprintf(w, `{"Cid":"%s","Type":"direct"}`+"\n", testCid)
		}
	})
	out := make(chan api.IPFSPinInfo)
	errc := make(chan error, 1)
	go func() { errc <- c.PinLs(context.Background(), "direct", out) }()
	n := 0
	for p := range out {
		if p.Type != api.IPFSPinDirect || p.Cid.String() != testCid {
			t.Errorf("got %+v", p)
		}
		n++
	}
	if err := <-errc; err != nil || n != 3 {
		t.Fatalf("PinLs: %d items, %v", n, err)
	}
}

func TestConfigNamesBadKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.API = "nonsense"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "ipfs.api") || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestPinManySendsEveryCidInOneCall(t *testing.T) {
	other := "bafkreie5ftqkrkojhzhhh4mc4ubuxmgcjjxyyrtcqh7wuyyahrlpghxhdq"
	calls := 0
	c := fakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		got := r.URL.Query()["arg"]
		if len(got) != 2 || got[0] != testCid || got[1] != other || r.URL.Query().Get("recursive") != "true" {
			t.Errorf("pin/add args %v, recursive=%s", got, r.URL.Query().Get("recursive"))
		}
		fmt.Fprintf(w, `{"Pins":["%s","%s"]}`+"\n", testCid, other)
	})
	a, _ := api.ParseCid(testCid)
	b, _ := api.ParseCid(other)
	if err := c.PinMany(context.Background(), []api.Cid{a, b}, api.PinModeRecursive, nil); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("%d calls, want 1", calls)
	}
}
