package p2p

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/trust"
)

// waitDropped waits until r's validator has refused at least rejected and
// ignored announcements in all.
func waitDropped(t *testing.T, r *replica, rejected, ignored int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rj, ig := r.bcast.Dropped()
		if rj >= rejected && ig >= ignored {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("validator refused %d/%d (rejected/ignored), want ≥ %d/%d", rj, ig, rejected, ignored)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A follower running modified software writes to its own replica and tries
// every way to announce it: with an unknown key, unsigned, with another
// cluster's key, with a valid envelope whose payload it swapped, and by
// replaying a curator's old announcement. Nothing changes anywhere else.
func TestForgedAndReplayedAnnouncementsChangeNothing(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	other := newTestCluster(t, "other")
	stranger, _ := trust.NewWriteKey()
	curator := newReplica(t, mn, tc)
	follower := newReplicaWith(t, mn, tc.name, nil, tc.keys)
	// The forger signs with a key of its own and (modified software)
	// accepts it.
	forger := newReplicaWith(t, mn, tc.name, stranger, tc.keys.With(stranger.Public()))
	connectAll(t, mn)
	time.Sleep(200 * time.Millisecond)
	ctx := context.Background()

	if err := curator.state.Add(ctx, pinN(1)); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 1, curator, follower, forger)
	oldEnvelope := waitLatest(t, curator, 0)
	if err := curator.state.Add(ctx, pinN(2)); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 2, curator, follower, forger)
	want := digest(t, curator)
	rj0, _ := curator.bcast.Dropped()
	fj0, fi0 := follower.bcast.Dropped()

	// 1. The forger writes; its broadcaster seals with the unknown key.
	if err := forger.state.Add(ctx, pinN(666)); err != nil {
		t.Fatal(err)
	}
	if digest(t, forger).Pins != 3 {
		t.Fatal("the forger's own write did not land locally")
	}
	forged := waitLatest(t, forger, 0)
	env, err := trust.NewVerifier(tc.name, trust.KeySet{}.With(stranger.Public())).Check(forged, false)
	if err != nil {
		t.Fatal(err)
	}
	waitDropped(t, curator, rj0+1, 0)
	waitDropped(t, follower, fj0+1, 0)

	// From here on the forger publishes raw bytes, past its own validator.
	forger.node.PubSub.UnregisterTopicValidator("/pinring/test/heads")
	publish := func(b []byte) {
		t.Helper()
		if err := forger.bcast.topic.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// 2. Unsigned: go-ds-crdt's own broadcast payload naming its heads.
	publish(env.Payload)
	// 3. Signed with another cluster's write key, for that cluster and
	// for this one.
	publish(trust.NewSigner(other.key, other.name, string(forger.node.Host.ID())).Seal(env.Payload))
	publish(trust.NewSigner(other.key, tc.name, string(forger.node.Host.ID())).Seal(env.Payload))
	// 4. A curator envelope with the forger's heads swapped in: the
	// signature no longer matches.
	swapped := append([]byte{}, oldEnvelope...)
	swapped = replaceOnce(t, swapped, mustPayload(t, tc, oldEnvelope), env.Payload)
	publish(swapped)
	waitDropped(t, curator, rj0+5, 0)
	waitDropped(t, follower, fj0+5, 0)
	// 5. The curator's old announcement, replayed verbatim.
	publish(oldEnvelope)
	waitDropped(t, follower, fj0+5, fi0+1)

	for name, r := range map[string]*replica{"curator": curator, "follower": follower} {
		if got := digest(t, r); got != want {
			t.Fatalf("%s changed: %+v, want %+v", name, got, want)
		}
		if _, err := r.state.Get(ctx, pinN(666).Cid); err == nil {
			t.Fatalf("%s holds the forged pin", name)
		}
	}
	// The curator keeps writing, and the others still follow it.
	if err := curator.state.Add(ctx, pinN(3)); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 3, curator, follower)
}

// waitLatest waits for an announcement by r itself newer than seq and
// returns it.
func waitLatest(t *testing.T, r *replica, seq uint64) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.bcast.mu.Lock()
		own, ok := r.bcast.latest[string(r.node.Host.ID())]
		r.bcast.mu.Unlock()
		if ok && own.seq > seq {
			return own.env
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica announced nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustPayload(t *testing.T, tc testCluster, env []byte) []byte {
	t.Helper()
	e, err := trust.NewVerifier(tc.name, tc.keys).Check(env, false)
	if err != nil {
		t.Fatal(err)
	}
	return e.Payload
}

// replaceOnce swaps old for new inside b, keeping the length prefix right
// only when the lengths are equal; otherwise the envelope is malformed,
// which the validator must refuse just the same.
func replaceOnce(t *testing.T, b, old, new []byte) []byte {
	t.Helper()
	for i := 0; i+len(old) <= len(b); i++ {
		if string(b[i:i+len(old)]) == string(old) {
			return append(append(append([]byte{}, b[:i]...), new...), b[i+len(old):]...)
		}
	}
	t.Fatal("payload not found in the envelope")
	return nil
}

// While every writer is away, a follower greets a newly joining follower
// with the newest signed announcement, and the newcomer syncs from it.
func TestFollowersRelayWhenWritersAreAway(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	curator := newReplica(t, mn, tc)
	follower := newReplicaWith(t, mn, tc.name, nil, tc.keys)
	connectAll(t, mn)
	ctx := context.Background()
	for i := range 20 {
		if err := curator.state.Add(ctx, pinN(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20, curator, follower)
	curator.stop()
	if err := mn.UnlinkPeers(curator.node.Host.ID(), follower.node.Host.ID()); err != nil {
		t.Fatal(err)
	}
	mn.DisconnectPeers(curator.node.Host.ID(), follower.node.Host.ID())

	newcomer := newReplicaWith(t, mn, tc.name, nil, tc.keys)
	if _, err := mn.LinkPeers(follower.node.Host.ID(), newcomer.node.Host.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(newcomer.node.Host.ID(), follower.node.Host.ID()); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20, follower, newcomer)
}

// A private network: peers with another secret, or none, cannot connect.
func TestPrivateNetworkRefusesOtherSecrets(t *testing.T) {
	secret := func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return b
	}
	ring := secret()
	start := func(s []byte) *Node {
		t.Helper()
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(context.Background(), Config{Key: sk, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Store: dssync.MutexWrap(ds.NewMapDatastore()), BlocksNamespace: "/b", Secret: s})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := start(ring)
	info := peer.AddrInfo{ID: a.Host.ID(), Addrs: a.Host.Addrs()}
	connect := func(n *Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.Host.Connect(ctx, info)
	}
	if err := connect(start(ring)); err != nil {
		t.Fatalf("same secret: %v", err)
	}
	if err := connect(start(secret())); err == nil {
		t.Fatal("a peer with another secret connected")
	}
	if err := connect(start(nil)); err == nil {
		t.Fatal("a peer with no secret connected")
	}
	if _, err := New(context.Background(), Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: []byte("short")}); err == nil {
		t.Fatal("a short secret was accepted")
	}
}
