package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHostListFailsOver(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/version" {
			w.Write([]byte(`{"version":"test"}`))
			return
		}
		http.Error(w, `{"code":500,"message":"broken"}`, http.StatusInternalServerError)
	}))
	defer srv.Close()
	down := closedAddr(t)
	ctx := context.Background()

	cl, err := New(down+","+srv.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.Version(ctx)
	if err != nil || v.Version != "test" {
		t.Fatalf("with the first host down: %q, %v", v, err)
	}
	if cl.base() != srv.URL {
		t.Fatalf("the client stays on %s, not on the peer that answered", cl.base())
	}
	// An error answer is an answer: no failover (the request reached a
	// peer), and the message is the peer's.
	if _, err := cl.ID(ctx); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("an error answer: %v", err)
	}
	// Every host down: every one is named.
	other := closedAddr(t)
	cl, _ = New(down+","+other, 0)
	if _, err := cl.Version(ctx); err == nil || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), other) {
		t.Fatalf("all hosts down: %v", err)
	}
	if _, err := New("127.0.0.1:1,not a host", 0); err == nil || !strings.Contains(err.Error(), "not a host") {
		t.Fatalf("a bad host in the list: %v", err)
	}
}
