package p2p

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
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
	Serve(server, pr, nil, func(s network.Stream) {
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
	Serve(server, busyProto, nil, func(s network.Stream) { in <- struct{}{}; <-hold; s.Close() }, func(s network.Stream) {
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

// A status flooder — many requests for every pin's status at once, and
// silent streams — gets at most maxStatusAll listings running, and its
// silent streams are dropped after Status.Idle; single-CID requests are
// still answered meanwhile. Before, every stream within 32 ran a full
// listing, and a silent one held its slot for 30 minutes.
func TestStatusFloodIsBounded(t *testing.T) {
	defer func(idle time.Duration) { Status.Idle = idle }(Status.Idle)
	Status.Idle = time.Second
	// Real hosts: mocknet's streams ignore deadlines.
	hs := realHosts(t, 2)
	server, flooder := hs[0], hs[1]
	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	ServeStatus(server, func(_ context.Context, c api.Cid) api.PinInfo {
		return api.PinInfo{Cid: c, Peer: server.ID()}
	}, func(ctx context.Context, fn func(api.PinInfo) error) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return fn(api.PinInfo{Cid: testkit.Cid(1), Peer: server.ID()})
	})
	ctx := context.Background()
	// Ten silent streams, then twenty listings at once.
	var silent []network.Stream
	for range 10 {
		s, err := flooder.NewStream(ctx, server.ID(), Status.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(nil)
		silent = append(silent, s)
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 20 {
		wg.Go(func() {
			if AskStatus(ctx, flooder, server.ID(), api.Cid{}, func(api.PinInfo) error { return nil }) != nil {
				failed.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := AskStatus(ctx, flooder, server.ID(), testkit.Cid(7), func(api.PinInfo) error { return nil }); err != nil {
		t.Fatalf("a one-CID status during the flood: %v", err)
	}
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if most > maxStatusAll || failed.Load() < 20-maxStatusAll {
		t.Fatalf("%d listings ran at once (want at most %d); %d of 20 refused", most, maxStatusAll, failed.Load())
	}
	for _, s := range silent {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(s); err == nil {
			t.Fatal("a silent status stream was still open after Status.Idle")
		}
	}
	t.Logf("20 listings asked at once: %d ran at most at once, %d refused", most, failed.Load())
}

// realHosts are n libp2p hosts on loopback TCP, connected to the first.
func realHosts(t *testing.T, n int) []host.Host {
	t.Helper()
	var hs []host.Host
	for i := range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		if i > 0 {
			if err := h.Connect(context.Background(), peer.AddrInfo{ID: hs[0].ID(), Addrs: hs[0].Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
		hs = append(hs, h)
	}
	return hs
}
