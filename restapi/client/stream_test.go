package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type item struct {
	Name string `json:"name"`
}

// A stream longer than the client's timeout is read whole while objects
// keep coming; a peer that goes quiet mid-stream is cut after the timeout
// and the error says so.
func TestStreamTimeoutIsBetweenObjects(t *testing.T) {
	const gap = 40 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 10
		if r.URL.Query().Get("filter") == "stall" {
			n = 2
		}
		for i := range n {
			fmt.Fprintf(w, `{"name":"n%d"}`+"\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(gap)
		}
		if n == 2 {
			<-r.Context().Done() // says nothing more
		}
	}))
	defer srv.Close()
	timeout := 4 * gap // the whole stream takes 10 gaps
	cl, err := New(srv.URL, timeout)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = streamInto(cl, context.Background(), http.MethodGet, "/peers", nil, func(o item) error {
		names = append(names, o.Name)
		time.Sleep(timeout) // the caller's own time does not count
		return nil
	})
	if err != nil || len(names) != 10 {
		t.Fatalf("a slow but steady stream: %d objects, %v", len(names), err)
	}

	names = nil
	began := time.Now()
	err = streamInto(cl, context.Background(), http.MethodGet, "/peers", map[string][]string{"filter": {"stall"}}, func(o item) error {
		names = append(names, o.Name)
		return nil
	})
	if !errors.Is(err, errStalled) || len(names) != 2 {
		t.Fatalf("a stalled stream: %d objects, %v", len(names), err)
	}
	if d := time.Since(began); d > 20*timeout {
		t.Fatalf("a stalled stream was cut after %s", d)
	}
	t.Log(err)
}
