package peer

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/membership"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/status"
	"github.com/pinring/pinring/trust"
)

func TestPeerPinUnpinOverREST(t *testing.T) {
	p := startTestPeer(t)
	cl, _ := client.New(p.APIAddr(), 0)
	ctx := context.Background()
	c := testkit.Cid(1)
	pin, err := cl.Pin(ctx, c, api.PinOptions{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if pin.ReplicationFactorMin != -1 || pin.Version != 1 || pin.Timestamp.IsZero() {
		t.Fatalf("stored pin %+v", pin)
	}
	// The answer is the record as stored, and pinning again rewrites it.
	for version := uint64(1); version <= 2; version++ {
		stored, err := cl.Allocation(ctx, c)
		if err != nil || !stored.Equal(&pin) || stored.Version != version || !stored.Timestamp.Equal(pin.Timestamp) || stored.Writer != pin.Writer || pin.Writer == "" {
			t.Fatalf("answered %+v, stored %+v (%v)", pin, stored, err)
		}
		if version == 1 {
			if pin, err = cl.Pin(ctx, c, api.PinOptions{Name: "x"}); err != nil || pin.Version != 2 {
				t.Fatalf("pinned again: %+v %v", pin, err)
			}
		}
	}
	// rmin 2 cannot be met by one peer.
	_, err = cl.Pin(ctx, testkit.Cid(2), api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2})
	var apiErr api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 400 || !strings.Contains(apiErr.Message, "replication-min") {
		t.Fatalf("rmin 2 on one peer: %v", err)
	}
	// rmax 1 allocates to this peer.
	pin, err = cl.Pin(ctx, testkit.Cid(3), api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1})
	if err != nil || len(pin.Allocations) != 1 || pin.Allocations[0] != p.PeerID() {
		t.Fatalf("rmax 1: %+v %v", pin.Allocations, err)
	}
	// pin update inherits the options of the pin it updates.
	up, err := cl.Pin(ctx, testkit.Cid(4), api.PinOptions{PinUpdate: c})
	if err != nil || up.Name != "x" || !up.PinUpdate.Equals(c.Cid) {
		t.Fatalf("pin update: %+v %v", up, err)
	}
	if _, err := cl.Unpin(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Unpin(ctx, c); !errors.As(err, &apiErr) || apiErr.Code != 404 {
		t.Fatalf("second unpin: %v", err)
	}
}

// startClusterPeer starts a peer of cluster name that writes with key (nil:
// a follower) and trusts trusted (key is trusted too).
func startClusterPeer(t *testing.T, name string, key *trust.WriteKey, trusted []trust.PublicKey, bootstrap ...string) *Peer {
	t.Helper()
	return startClusterPeerWith(t, name, key, trusted, nil, bootstrap...)
}

// startClusterPeerWith is startClusterPeer with mod applied to the config.
func startClusterPeerWith(t *testing.T, name string, key *trust.WriteKey, trusted []trust.PublicKey, mod func(*peerconfig.Config), bootstrap ...string) *Peer {
	t.Helper()
	cfg, dir := clusterPeerConfig(t, name, key, trusted, mod, bootstrap...)
	p, err := New(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// clusterPeerConfig makes the config directory and config of a peer that
// startClusterPeerWith would start.
func clusterPeerConfig(t *testing.T, name string, key *trust.WriteKey, trusted []trust.PublicKey, mod func(*peerconfig.Config), bootstrap ...string) (peerconfig.Config, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := peerconfig.NewIdentity(dir); err != nil {
		t.Fatal(err)
	}
	cfg := peerconfig.DefaultConfig()
	giveWriteKey(t, &cfg, dir, key, trusted...)
	cfg.Cluster.Name = name
	cfg.Cluster.Bootstrap = bootstrap
	cfg.Cluster.AnnounceInterval = config.Duration(200 * time.Millisecond)
	cfg.State.RebroadcastInterval = config.Duration(200 * time.Millisecond)
	cfg.API.Listen = "127.0.0.1:0"
	cfg.IPFS.API = quickKubo(t)
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.P2P.ReconnectMax = config.Duration(500 * time.Millisecond)
	cfg.P2P.MDNS = false
	if mod != nil {
		mod(&cfg)
	}
	return cfg, dir
}

func TestTwoClustersNeverMix(t *testing.T) {
	ctx := context.Background()
	alpha, beta := newWriteKey(t), newWriteKey(t)
	a := startClusterPeer(t, "alpha", alpha, nil)
	addr := a.P2PAddrs()[0].String()
	sameCluster := startClusterPeer(t, "alpha", alpha, nil, addr)
	otherCluster := startClusterPeer(t, "beta", beta, nil, addr) // connected to a, another cluster
	if _, err := a.Pin(ctx, api.Pin{Cid: testkit.Cid(1), Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "a peer of the same cluster to get the pin", func() bool {
		d, _ := sameCluster.Digest(ctx)
		return d.Pins == 1
	})
	if d, _ := otherCluster.Digest(ctx); d.Pins != 0 {
		t.Fatalf("a peer of another cluster holds %d pins", d.Pins)
	}
	n := 0
	otherCluster.Peers(ctx, func(api.ID) error { n++; return nil })
	if n != 1 {
		t.Fatalf("the other cluster's peer lists %d peers, want only itself", n)
	}
}

func TestFollowerReadsButCannotWrite(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	curator := startClusterPeer(t, "ring", key, nil)
	follower := startClusterPeer(t, "ring", nil, []trust.PublicKey{key.Public()}, curator.P2PAddrs()[0].String())
	pin, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(1), Type: api.DataType, MaxDepth: -1})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Writer != key.Public().String() {
		t.Fatalf("the pin records writer %q, want %s", pin.Writer, key.Public())
	}
	testkit.WaitFor(t, 10*time.Second, "the follower syncs the pin", func() bool {
		got, err := follower.PinGet(ctx, testkit.Cid(1))
		return err == nil && got.Writer == pin.Writer
	})

	cl, _ := client.New(follower.APIAddr(), 0)
	var apiErr api.Error
	_, err = cl.Pin(ctx, testkit.Cid(2), api.PinOptions{})
	if !errors.As(err, &apiErr) || apiErr.Code != 403 || !strings.Contains(apiErr.Message, "no write key") {
		t.Fatalf("pin at a follower: %v, want 403 saying why", err)
	}
	if _, err := cl.Unpin(ctx, testkit.Cid(1)); !errors.As(err, &apiErr) || apiErr.Code != 403 {
		t.Fatalf("unpin at a follower: %v, want 403", err)
	}
	// Nor can it make the other peers' kubos collect garbage.
	if _, err := cl.RepoGC(ctx, false); !errors.As(err, &apiErr) || apiErr.Code != 403 || !strings.Contains(apiErr.Message, "--local") {
		t.Fatalf("ipfs gc of every peer at a follower: %v, want 403 saying what it may do", err)
	}
	id, err := cl.ID(ctx)
	if err != nil || id.Role != api.RoleFollower || id.WriteKey != "" {
		t.Fatalf("follower /id: %+v %v", id, err)
	}
	// The follower sees the curator as a writer (its endorsement checks
	// out); the curator does not see the follower as one.
	testkit.WaitFor(t, 10*time.Second, "peers see each other's roles", func() bool {
		return follower.isWriter(curator.PeerID()) && curator.peerSeen(follower.PeerID())
	})
	if curator.isWriter(follower.PeerID()) {
		t.Fatal("the curator takes the follower for a writer")
	}
	if d, _ := follower.Digest(ctx); d.Pins != 1 {
		t.Fatalf("the follower's refused writes changed its pinset: %+v", d)
	}
}

func TestPeerRefusesToStartWithAnUntrustedOrNoKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := peerconfig.NewIdentity(dir); err != nil {
		t.Fatal(err)
	}
	cfg := peerconfig.DefaultConfig()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.IPFS.API = quickKubo(t)
	if _, err := New(context.Background(), cfg, dir); err == nil || !strings.Contains(err.Error(), "trust.write_keys is empty") {
		t.Fatalf("no keys: %v", err)
	}
	giveWriteKey(t, &cfg, dir, newWriteKey(t))
	cfg.Trust.WriteKeys = []string{newWriteKey(t).Public().String()} // another key
	if _, err := New(context.Background(), cfg, dir); err == nil || !strings.Contains(err.Error(), "not among trust.write_keys") {
		t.Fatalf("untrusted key: %v", err)
	}
	cfg.Cluster.Secret = "abcd"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster.secret") || strings.Contains(err.Error(), "abcd") {
		t.Fatalf("short secret: %v (must name the key, never the value)", err)
	}
}

// A restarted peer finds the cluster through the peers it remembers, with
// no bootstrap address; a peer that loses every connection says it is
// alone in its health report, and not once it has company again.
func TestRememberedPeersAndAlone(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	a := startClusterPeer(t, "mem", key, nil)
	dir := t.TempDir()
	if _, err := peerconfig.NewIdentity(dir); err != nil {
		t.Fatal(err)
	}
	cfg := peerconfig.DefaultConfig()
	giveWriteKey(t, &cfg, dir, nil, key.Public())
	cfg.Cluster.Name = "mem"
	cfg.Cluster.AnnounceInterval = config.Duration(200 * time.Millisecond)
	cfg.API.Listen = "127.0.0.1:0"
	cfg.IPFS.API = quickKubo(t)
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.P2P.ReconnectMax = config.Duration(300 * time.Millisecond)
	cfg.P2P.MDNS = false
	first := cfg
	first.Cluster.Bootstrap = []string{a.P2PAddrs()[0].String()}
	b, err := New(ctx, first, dir)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "b remembers a", func() bool {
		return slices.ContainsFunc(membership.Remembered(filepath.Join(dir, peerconfig.PeerstoreFile)), func(m ma.Multiaddr) bool { return strings.Contains(m.String(), a.PeerID().String()) })
	})
	h := b.Health(ctx)
	if !h.Healthy || h.Alone || h.ConnectedPeers != 1 || h.ClusterPeers[0].ID != a.PeerID() || h.ClusterPeers[0].LastSeen.IsZero() {
		t.Fatalf("health with a connected: %+v", h)
	}
	b.Close()

	b, err = New(ctx, cfg, dir) // no bootstrap this time
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testkit.WaitFor(t, 10*time.Second, "b reconnects to a from its peerstore", func() bool { return len(b.ring.ConnectedTo()) == 1 })
	a.Close()
	testkit.WaitFor(t, 10*time.Second, "b says it is alone", func() bool { return b.Health(ctx).Alone })
	cl, _ := client.New(b.APIAddr(), 0)
	if h, err := cl.Health(ctx); err != nil || !h.Alone || len(h.ClusterPeers) != 1 || h.ClusterPeers[0].Connected || h.Store.Bytes <= 0 {
		t.Fatalf("GET /health while alone (and the store's size on disk, reopened): %+v %v", h, err)
	}
}

// A peer that leaves has its pins moved at once, although repair.grace is
// an hour; it stops (Left) after telling the others.
func TestLeavingPeerPinsMoveAtOnce(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	fast := func(c *peerconfig.Config) {
		c.Monitor.Interval = config.Duration(200 * time.Millisecond)
		c.Repair.Grace = config.Duration(time.Hour)
		c.Repair.Interval = config.Duration(time.Hour) // only the departure triggers a pass
	}
	a := startClusterPeerWith(t, "leave", key, nil, fast)
	addr := a.P2PAddrs()[0].String()
	b := startClusterPeerWith(t, "leave", key, nil, fast, addr)
	c := startClusterPeerWith(t, "leave", key, nil, fast, addr)
	testkit.WaitFor(t, 10*time.Second, "a sees three live writers", func() bool {
		return len(a.liveTrusted()) == 3 && len(a.candidates()) == 3
	})
	pin, err := a.Pin(ctx, api.Pin{Cid: testkit.Cid(7), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []peer.ID{c.PeerID()}}})
	if err != nil || len(pin.Allocations) != 1 || pin.Allocations[0] != c.PeerID() {
		t.Fatalf("pin on c: %+v %v", pin.Allocations, err)
	}
	testkit.WaitFor(t, 10*time.Second, "b has the pin", func() bool { _, err := b.PinGet(ctx, pin.Cid); return err == nil })
	cl, _ := client.New(c.APIAddr(), 0)
	var apiErr api.Error
	if err := cl.PeerRm(ctx, a.PeerID()); !errors.As(err, &apiErr) || apiErr.Code != 400 {
		t.Fatalf("removing another peer: %v, want 400", err)
	}
	if err := cl.PeerRm(ctx, c.PeerID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Left():
	default:
		t.Fatal("Left is not closed after leaving")
	}
	c.Close()
	testkit.WaitFor(t, 10*time.Second, "the pin moved off c, with an hour of grace", func() bool {
		for _, p := range []*Peer{a, b} {
			got, err := p.PinGet(ctx, pin.Cid)
			if err != nil || len(got.Allocations) != 1 || got.Allocations[0] == c.PeerID() {
				return false
			}
		}
		return true
	})
}

var pinObserved = regexp.MustCompile(`(?m)^pinring_pin_duration_seconds_count [1-9]`)

func TestPrometheusMetrics(t *testing.T) {
	p := startTestPeer(t)
	ctx := context.Background()
	cl, _ := client.New(p.APIAddr(), 0)
	if _, err := cl.Pin(ctx, testkit.Cid(1), api.PinOptions{}); err != nil {
		t.Fatal(err)
	}
	cl.ID(ctx)
	if _, err := cl.Pin(ctx, testkit.Cid(2), api.PinOptions{ReplicationFactorMin: 5, ReplicationFactorMax: 5}); err == nil {
		t.Fatal("rmin 5 on one peer was accepted")
	}
	var body string
	testkit.WaitFor(t, 10*time.Second, "the pin's duration observed", func() bool {
		resp, err := http.Get("http://" + p.APIAddr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		// At least once: the recover pass that runs at start can see the
		// write before it is acknowledged (and so before the tracker is
		// told) and pin it too. Packed: the head is announced, and then
		// the journaled change leaves the overlay.
		return pinObserved.MatchString(body) && strings.Contains(body, "pinring_crdt_heads 1") &&
			strings.Contains(body, "pinring_state_unpacked 0")
	})
	for _, want := range []string{
		`pinring_api_request_duration_seconds_count{code="200",route="GET /id"} 1`,
		`pinring_api_request_duration_seconds_count{code="400",route="POST /pins/{arg...}"} 1`,
		`pinring_pins_by_status{status="pin_error"} 0`,
		"pinring_queue_length ",
		"pinring_peers_seen 0",
		"pinring_metrics_received_total 0",
		"pinring_crdt_sync_queue 0",
		"pinring_store_bytes ",
		"pinring_journal_syncs_total 1",
		"pinring_journal_writes_total 1",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A peer that joins is listed by the others, and lists them, at once, not
// after an announcement interval (an hour here): peers announce themselves
// when someone joins the peers topic.
func TestPeersSeeANewcomerAtOnce(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	hourly := func(c *peerconfig.Config) { c.Cluster.AnnounceInterval = config.Duration(time.Hour) }
	a := startClusterPeerWith(t, "ring", key, nil, hourly)
	b := startClusterPeerWith(t, "ring", key, nil, hourly, a.P2PAddrs()[0].String())
	lists := func(p *Peer, other *Peer) bool {
		found := false
		p.Peers(ctx, func(id api.ID) error {
			found = found || (id.ID == other.PeerID() && id.Connected && len(id.Addresses) > 0)
			return nil
		})
		return found
	}
	testkit.WaitFor(t, 15*time.Second, "a and b to list each other", func() bool { return lists(a, b) && lists(b, a) })
}

// A follower of a ring larger than pubsubmon.QuietPeers hears the writers'
// heartbeats only; its health table (and GET /pins' summaries) come from a
// writer's, over the metrics protocol, so it still shows every peer.
func TestAQuietFollowerShowsTheWritersTable(t *testing.T) {
	n := pubsubmon.QuietPeers
	t.Cleanup(func() { pubsubmon.QuietPeers = n }) // after the peers close
	pubsubmon.QuietPeers = 1                       // a ring of three is large
	ctx := context.Background()
	fast := func(c *peerconfig.Config) { c.Monitor.Interval = config.Duration(300 * time.Millisecond) }
	key := newWriteKey(t)
	trusted := []trust.PublicKey{key.Public()}
	a := startClusterPeerWith(t, "ring", key, trusted, fast)
	var fs []*Peer
	for range 2 {
		cfg, dir := clusterPeerConfig(t, "ring", nil, trusted, fast, a.P2PAddrs()[0].String())
		f, err := New(ctx, cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fs = append(fs, f)
	}
	f1, f2 := fs[0], fs[1]
	peersOf := func(ms []api.Metric) map[peer.ID]bool {
		out := map[peer.ID]bool{}
		for _, mt := range ms {
			out[mt.Peer] = true
		}
		return out
	}
	all := map[peer.ID]bool{a.PeerID(): true, f1.PeerID(): true, f2.PeerID(): true}
	testkit.WaitFor(t, 20*time.Second, "both followers quiet, the writer hearing all three", func() bool {
		return f1.monitor.Quiet() && f2.monitor.Quiet() && !a.monitor.Quiet() && maps.Equal(peersOf(a.Metrics(ctx, pubsubmon.MetricFreeSpace)), all)
	})
	if own := peersOf(f1.monitor.LatestValid(pubsubmon.MetricFreeSpace)); own[f2.PeerID()] || !own[a.PeerID()] || !own[f1.PeerID()] {
		t.Fatalf("a quiet follower's own table: %v, want the writer and itself", own)
	}
	if got := peersOf(f1.Metrics(ctx, pubsubmon.MetricFreeSpace)); !maps.Equal(got, all) {
		t.Fatalf("a quiet follower's health table: %v, want every peer (the writer's table) %v", got, all)
	}
	sum := status.FromMetrics(func() []api.Metric { return f1.ringMetrics(ctx, status.SummaryMetrics...) })
	if s, ok := sum(f2.PeerID()); !ok || !s.Alive {
		t.Fatalf("a quiet follower's summary of the other follower: %+v, %v; want alive", s, ok)
	}
}
