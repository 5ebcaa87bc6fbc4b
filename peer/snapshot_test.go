package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/countio"
	"github.com/pinring/pinring/internal/freeport"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/trust"
)

// A new peer loads a writer's snapshot before it opens its pinset, and
// from there on follows the deltas; a peer whose only contact holds no
// write key gets no snapshot and syncs through the DAG.
func TestNewPeerStartsFromASnapshot(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	trusted := []trust.PublicKey{key.Public()}
	curator := startClusterPeer(t, "ring", key, nil)
	const n = 3000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := curator.st().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := curator.Digest(ctx)
	if err != nil || want.Pins != n {
		t.Fatalf("curator: %+v %v", want, err)
	}

	// It holds every pin the moment it starts: nothing was merged.
	fresh := startClusterPeer(t, "ring", nil, trusted, curator.P2PAddrs()[0].String())
	if fresh.snapshot == nil || fresh.snapshot.Blocks == 0 || len(fresh.snapshot.Heads) == 0 {
		t.Fatalf("the new peer loaded no snapshot: %+v", fresh.snapshot)
	}
	if got, _ := fresh.Digest(ctx); got != want {
		t.Fatalf("digest right after start %+v, want %+v", got, want)
	}
	if _, err := fresh.PinGet(ctx, testkit.Cid(17)); err != nil {
		t.Fatal(err)
	}

	// Later writes arrive as deltas on top of the snapshot.
	if _, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(n), Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := curator.Unpin(ctx, testkit.Cid(0)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Minute, "the new peer follows later writes", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := fresh.Digest(ctx)
		return a == b && a.Pins == n
	})

	// A peer that joins while the curator keeps writing still gets a
	// consistent snapshot, and then every later write.
	stop := make(chan struct{})
	writing := make(chan int)
	var progress atomic.Int64
	go func() {
		i := n + 1
		defer func() { writing <- i }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1}); err != nil {
				t.Error(err)
				return
			}
			i++
			progress.Store(int64(i - n - 1))
		}
	}()
	testkit.WaitFor(t, 30*time.Second, "the curator to be writing", func() bool { return progress.Load() >= 50 })
	busy := startClusterPeer(t, "ring", nil, trusted, curator.P2PAddrs()[0].String())
	close(stop)
	written := <-writing
	if busy.snapshot == nil {
		t.Fatal("no snapshot while the curator was writing")
	}
	testkit.WaitFor(t, time.Minute, "the peer that joined during writes converges", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := busy.Digest(ctx)
		return a == b && a.Pins == uint64(written-1)
	})
	t.Logf("joined during writes: snapshot at height %d, %d pins written meanwhile", busy.snapshot.Height, written-n-1)

	// A follower serves no snapshot, but says which writers it is
	// connected to: a peer that only knows the follower gets its snapshot
	// from the curator.
	testkit.WaitFor(t, 10*time.Second, "the follower to know the curator as a writer", func() bool {
		return len(fresh.ring.ConnectedWriters()) > 0
	})
	late := startClusterPeerWith(t, "ring", nil, trusted, func(c *peerconfig.Config) {
		c.State.SnapshotWait = config.Duration(time.Minute)
	}, fresh.P2PAddrs()[0].String())
	if late.snapshot == nil {
		t.Fatal("a peer that knows only a follower connected to a writer loaded no snapshot")
	}
	testkit.WaitFor(t, time.Minute, "the late peer follows", func() bool {
		a, _ := curator.Digest(ctx)
		b, _ := late.Digest(ctx)
		return a == b
	})

	// With no writer online, a peer that only knows followers stops
	// waiting once they say so, and syncs from them through the DAG.
	want, _ = curator.Digest(ctx)
	curator.Close()
	testkit.WaitFor(t, 10*time.Second, "the follower to see the curator go", func() bool {
		return len(fresh.ring.ConnectedWriters()) == 0
	})
	began := time.Now()
	alone := startClusterPeerWith(t, "ring", nil, trusted, func(c *peerconfig.Config) {
		c.State.SnapshotWait = config.Duration(time.Minute)
	}, fresh.P2PAddrs()[0].String())
	if alone.snapshot != nil {
		t.Fatalf("a follower gave a snapshot: %+v", alone.snapshot)
	}
	if waited := time.Since(began); waited > 30*time.Second {
		t.Fatalf("waited %s for a snapshot although every peer said no writer is online", waited)
	}
	// A whole DAG of ~5,000 deltas: under CI load (-race, e2e beside it)
	// it once took over 10 s.
	testkit.WaitFor(t, time.Minute, "the peer syncs from the followers through the DAG", func() bool {
		b, _ := alone.Digest(ctx)
		return b == want
	})
	t.Logf("with no writer online, started in %s", time.Since(began).Round(time.Millisecond))

	// A founding peer (no one to join) does not wait.
	began = time.Now()
	startClusterPeer(t, "other", key, nil)
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("a founder took %s to start", took)
	}
}

// A peer's REST API opens at once: while a new peer waits for a snapshot
// it answers 503 saying so (and lets no write through), then, once the
// peer is ready, as usual.
func TestAPIAnswersWhileAPeerStarts(t *testing.T) {
	key := newWriteKey(t)
	// The only contact is a peer that is not there, so the new peer asks
	// for a snapshot for the whole of snapshot_wait.
	sk, err := peerconfig.NewIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := peer.IDFromPrivateKey(sk)
	apiAddr, svcAddr, proxyAddr := freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg, dir := clusterPeerConfig(t, "ring", key, nil, func(c *peerconfig.Config) {
		c.State.SnapshotWait = config.Duration(6 * time.Second)
		c.API.Listen = apiAddr
		c.PinSvc.Listen = svcAddr
		c.Proxy.Listen = proxyAddr
	}, fmt.Sprintf("/ip4/127.0.0.1/tcp/%s/p2p/%s", strings.Split(freeLoopbackAddr(t), ":")[1], gone))
	type started struct {
		p   *Peer
		err error
	}
	done := make(chan started, 1)
	go func() {
		p, err := New(context.Background(), cfg, dir)
		done <- started{p, err}
	}()

	// call answers the status, the body and its Retry-After.
	call := func(method, url string) (int, string, string, error) {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Authorization", "Bearer t") // the pinning service API asks for one
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Retry-After"), nil
	}
	get := func(method, path string) (int, api.Error, error) {
		code, body, _, err := call(method, "http://"+apiAddr+path)
		var e api.Error
		json.Unmarshal([]byte(body), &e)
		return code, e, err
	}
	var code int
	var e api.Error
	// The API opens before the peer starts asking (it says "opening the
	// pinset" until then): wait for the asking, and fail on anything but
	// a 503.
	testkit.WaitFor(t, 10*time.Second, "the REST API to say the peer asks for a snapshot", func() bool {
		code, e, err = get("GET", "/id")
		if err == nil && code != http.StatusServiceUnavailable {
			t.Fatalf("GET /id while starting: %d %+v", code, e)
		}
		return err == nil && strings.Contains(e.Message, "asking the cluster's peers for a snapshot")
	})
	if code, e, _ = get("POST", "/pins/"+testkit.Cid(1).String()); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /pins while starting: %d %+v", code, e)
	}
	// The pinning service API and the proxy's own calls answer the same,
	// each in its own error format; what the proxy forwards reaches kubo.
	for _, c := range []struct{ method, url, want string }{
		{"POST", "http://" + svcAddr + "/pins", `"reason":"SERVICE_UNAVAILABLE"`},
		{"GET", "http://" + svcAddr + "/pins", `"reason":"SERVICE_UNAVAILABLE"`},
		{"POST", "http://" + proxyAddr + "/api/v0/pin/add?arg=" + testkit.Cid(2).String(), `"Type":"error"`},
		{"POST", "http://" + proxyAddr + "/api/v0/pin/ls", `"Type":"error"`},
	} {
		code, body, retry, err := call(c.method, c.url)
		if err != nil || code != http.StatusServiceUnavailable || retry != "1" ||
			!strings.Contains(body, c.want) || !strings.Contains(body, "the peer is starting: asking the cluster's peers for a snapshot") {
			t.Fatalf("%s %s while starting: %d %q (Retry-After %q) %v", c.method, c.url, code, body, retry, err)
		}
	}
	if code, body, _, err := call("POST", "http://"+proxyAddr+"/api/v0/id"); err != nil || code != http.StatusOK || !strings.Contains(body, "12D3KooWD3eck") {
		t.Fatalf("a call forwarded to kubo while starting: %d %q %v", code, body, err)
	}

	var s started
	select {
	case s = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the peer did not start")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() { s.p.Close() })
	if code, e, err = get("GET", "/id"); code != http.StatusOK {
		t.Fatalf("GET /id once ready: %d %+v %v", code, e, err)
	}
	if code, body, _, err := call("GET", "http://"+svcAddr+"/pins"); code != http.StatusOK {
		t.Fatalf("GET /pins of the pinning service API once ready: %d %q %v", code, body, err)
	}
	if code, body, _, err := call("POST", "http://"+proxyAddr+"/api/v0/pin/ls"); code != http.StatusOK {
		t.Fatalf("pin/ls through the proxy once ready: %d %q %v", code, body, err)
	}
	if _, err := s.p.PinGet(context.Background(), testkit.Cid(1)); err == nil {
		t.Fatal("the pin refused while starting is in the pinset")
	}
}

// freeLoopbackAddr is a loopback address for a listener that must be
// named before it opens (internal/freeport).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	return freeport.Addr(t, freeport.Peer)
}

func TestStartingMessageSaysWhatThePeerDoes(t *testing.T) {
	var p Peer
	if m := p.startingMessage(); m != "" {
		t.Fatalf("a peer not starting says %q", m)
	}
	p.setStarting("opening the pinset")
	if m := p.startingMessage(); !strings.Contains(m, "opening the pinset") {
		t.Fatalf("opening: %q", m)
	}
	sk, _ := peerconfig.NewIdentity(t.TempDir())
	from, _ := peer.IDFromPrivateKey(sk)
	r := &countio.Reader{R: strings.NewReader(strings.Repeat("x", 3<<20))}
	p.starting.Store(&startPhase{from: from, received: &r.Count})
	io.Copy(io.Discard, r)
	if m := p.startingMessage(); !strings.Contains(m, from.String()) || !strings.Contains(m, "3.0 MiB so far") {
		t.Fatalf("loading: %q", m)
	}
	p.starting.Store(nil)
	if m := p.startingMessage(); m != "" {
		t.Fatalf("a ready peer says %q", m)
	}
}
