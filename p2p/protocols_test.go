package p2p

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// Beyond a protocol's Concurrent streams, a stream is reset (or answered
// by busy) before the handler sees it; a stream within the bound reaches
// the handler with the protocol's deadline set.
func TestServeBoundsConcurrency(t *testing.T) {
	hs := connectedHosts(t, 2)
	server, client := hs[0], hs[1]
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	pr := Protocol{ID: "/pinring/test/1.0.0", Concurrent: 1, Idle: time.Second, Deadline: time.Minute}
	Serve(server, pr, func(s network.Stream) {
		defer s.Close()
		entered <- struct{}{}
		<-release
		s.Write([]byte("served"))
	}, nil)
	ctx := context.Background()
	first, err := client.NewStream(ctx, server.ID(), pr.ID)
	if err != nil {
		t.Fatal(err)
	}
	first.Write([]byte("x"))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first stream never reached the handler")
	}
	second, err := client.NewStream(ctx, server.ID(), pr.ID)
	if err != nil {
		t.Fatal(err)
	}
	second.Write([]byte("x"))
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(second); err == nil || len(b) != 0 {
		t.Fatalf("the stream over the bound read %q, %v; want a reset", b, err)
	}
	close(release)
	if b, err := io.ReadAll(first); err != nil || string(b) != "served" {
		t.Fatalf("the first stream: %q, %v", b, err)
	}
	// With busy, the stream over the bound is answered by it.
	busyProto := Protocol{ID: "/pinring/test-busy/1.0.0", Concurrent: 1, Idle: time.Second}
	hold, in := make(chan struct{}), make(chan struct{})
	Serve(server, busyProto, func(s network.Stream) { in <- struct{}{}; <-hold; s.Close() }, func(s network.Stream) {
		s.Write([]byte("busy"))
		s.Close()
	})
	a, _ := client.NewStream(ctx, server.ID(), busyProto.ID)
	a.Write([]byte("x"))
	<-in // a holds the one slot
	b, _ := client.NewStream(ctx, server.ID(), busyProto.ID)
	b.Write([]byte("x"))
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(b); err != nil || string(got) != "busy" {
		t.Fatalf("over the bound with busy: %q, %v", got, err)
	}
	close(hold)
}

// Every protocol a peer serves is declared with every bound.
func TestProtocolTableIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, pr := range Protocols {
		if pr.ID == "" || pr.Does == "" || pr.Caller == "" || pr.MaxRequest <= 0 || pr.Idle <= 0 || pr.Concurrent <= 0 || seen[string(pr.ID)] {
			t.Errorf("incomplete or repeated: %+v", pr)
		}
		seen[string(pr.ID)] = true
	}
}
