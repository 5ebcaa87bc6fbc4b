package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/trust"
)

// stranger is a real libp2p host, with a fresh key, that joins a peer's
// gossipsub and publishes whatever it likes on a topic.
type stranger struct {
	h     host.Host
	topic *pubsub.Topic
}

func newStranger(t *testing.T, target *Peer, topic string) *stranger {
	t.Helper()
	ctx := context.Background()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: target.PeerID(), Addrs: target.P2PAddrs()}); err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	return &stranger{h: h, topic: tp}
}

// heartbeat is a heartbeat as pubsubmon's wire format spells it, written
// by hand as a modified client would.
func (s *stranger) heartbeat(t *testing.T, free string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{
		"peer": s.h.ID(), "peername": "sybil", "ttl": int64(time.Hour),
		"seq":     time.Now().UnixNano(),
		"metrics": []map[string]string{{"name": "freespace", "value": free}, {"name": "ping"}},
	})
	if err := s.topic.Publish(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// A swarm of fresh keys announcing a petabyte free each gets no
// allocation; a follower gets allocations once a curator admits it, and
// loses them (its pins move) when the curator revokes it. Before
// admission, every pin with a finite replication factor went to the
// swarm.
func TestSybilSwarmGetsNothingAndAdmissionDecides(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	fast := func(c *peerconfig.Config) { c.Monitor.Interval = config.Duration(300 * time.Millisecond) }
	curator := startClusterPeerWith(t, "sybil", key, nil, fast)
	follower := startClusterPeerWith(t, "sybil", nil, []trust.PublicKey{key.Public()}, fast, curator.P2PAddrs()[0].String())
	var swarm []*stranger
	for range 12 {
		swarm = append(swarm, newStranger(t, curator, "/pinring/sybil/metrics"))
	}
	isSybil := func(pid peer.ID) bool {
		return slices.ContainsFunc(swarm, func(s *stranger) bool { return s.h.ID() == pid })
	}
	testkit.WaitFor(t, 30*time.Second, "the curator to hear the swarm and the follower", func() bool {
		for _, s := range swarm {
			s.heartbeat(t, "1000000000000000000")
		}
		return len(curator.Metrics(ctx, "freespace")) == 2+len(swarm)
	})

	cl, _ := client.New(curator.APIAddr(), 0)
	for i := range 5 {
		pin, err := cl.Pin(ctx, testkit.Cid(i), api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 3})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pin.Allocations, []peer.ID{curator.PeerID()}) {
			t.Fatalf("pin %d allocated to %v (sybils: %v); want the curator alone, the follower not admitted yet",
				i, pin.Allocations, slices.ContainsFunc(pin.Allocations, isSybil))
		}
	}
	// Asking for the follower by name says what to do.
	var apiErr api.Error
	_, err := cl.Pin(ctx, testkit.Cid(50), api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []peer.ID{follower.PeerID()}})
	if !errors.As(err, &apiErr) || apiErr.Code != 400 || !strings.Contains(apiErr.Message, "peers admit "+follower.PeerID().String()) {
		t.Fatalf("a pin for the unadmitted follower: %v, want a 400 saying how to admit it", err)
	}
	admissionSeen := func(pid peer.ID) string {
		var got string
		cl.Peers(ctx, func(id api.ID) error {
			if id.ID == pid {
				got = id.Admission
			}
			return nil
		})
		return got
	}
	if got := admissionSeen(follower.PeerID()); got != api.AdmissionNone {
		t.Fatalf("peers ls says the follower is %q, want %q", got, api.AdmissionNone)
	}

	// A follower cannot admit anyone, itself included.
	fcl, _ := client.New(follower.APIAddr(), 0)
	if _, err := fcl.Admit(ctx, follower.PeerID(), ""); !errors.As(err, &apiErr) || apiErr.Code != 403 {
		t.Fatalf("a follower admitting itself: %v, want 403", err)
	}
	if _, err := cl.Admit(ctx, follower.PeerID(), "volunteer, rack 3"); err != nil {
		t.Fatal(err)
	}
	if got := admissionSeen(follower.PeerID()); got != api.AdmissionAdmitted {
		t.Fatalf("peers ls says the admitted follower is %q", got)
	}
	for i := 10; i < 15; i++ {
		pin, err := cl.Pin(ctx, testkit.Cid(i), api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 3})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(pin.Allocations)
		want := []peer.ID{curator.PeerID(), follower.PeerID()}
		slices.Sort(want)
		if !slices.Equal(pin.Allocations, want) {
			t.Fatalf("pin %d allocated to %v; want the curator and the admitted follower, no sybil", i, pin.Allocations)
		}
	}
	// The admission is in the pinset: the follower's copy has it too.
	testkit.WaitFor(t, 20*time.Second, "the admission record at the follower", func() bool {
		as, err := follower.Admissions(ctx)
		return err == nil && len(as) == 1 && as[0].Peer == follower.PeerID() && as[0].Note == "volunteer, rack 3"
	})

	// Revoked: its pins move off it.
	if _, err := cl.Revoke(ctx, follower.PeerID(), "left the project"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the revoked follower's pins to move off it", func() bool {
		for i := 10; i < 15; i++ {
			pin, err := curator.PinGet(ctx, testkit.Cid(i))
			if err != nil || slices.Contains(pin.Allocations, follower.PeerID()) {
				return false
			}
		}
		return true
	})
	if got := admissionSeen(follower.PeerID()); got != api.AdmissionRevoked {
		t.Fatalf("peers ls says the revoked follower is %q", got)
	}
}

// announce publishes an announcement as the stranger, by hand.
func (s *stranger) announce(t *testing.T, id map[string]any) {
	t.Helper()
	b, _ := json.Marshal(id)
	if err := s.topic.Publish(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// Strangers' announcements cost a bounded table entry, never a dial: 40
// fresh keys announcing 32 addresses each get no reconnect loop, no kubo
// dial and no line in the peerstore file; an announcement listing another
// peer's addresses (to have the ring dial a target) is refused. Before,
// each stranger got a reconnect loop for ever and its addresses were
// written to the peerstore.
func TestStrangersAnnouncementsAreNotDialled(t *testing.T) {
	key := newWriteKey(t)
	curator := startClusterPeer(t, "strangers", key, nil)
	victim := testkit.PeerID(t, 99)
	var swarm []*stranger
	for range 40 {
		s := newStranger(t, curator, "/pinring/strangers/peers")
		swarm = append(swarm, s)
	}
	// Each stranger knows the curator is on the topic before it publishes.
	testkit.WaitFor(t, 20*time.Second, "every stranger to see the curator on the peers topic", func() bool {
		for _, s := range swarm {
			if !slices.Contains(s.topic.ListPeers(), curator.PeerID()) {
				return false
			}
		}
		return true
	})
	for i, s := range swarm {
		var addrs []string
		for j := range 32 {
			addrs = append(addrs, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", 1+j, s.h.ID()))
		}
		s.announce(t, map[string]any{"id": s.h.ID(), "peername": fmt.Sprint("stranger-", i), "addresses": addrs,
			"ipfs": map[string]any{"id": s.h.ID(), "addresses": addrs}})
	}
	swarm[0].announce(t, map[string]any{"id": swarm[0].h.ID(), "peername": "pointer",
		"addresses": []string{"/ip4/127.0.0.1/tcp/1/p2p/" + victim.String()}})
	testkit.WaitFor(t, 20*time.Second, "the curator to hear the strangers", func() bool { return curator.peers.Len() == 40 })
	if curator.peernameOf(swarm[0].h.ID()) == "pointer" {
		t.Fatal("an announcement pointing at another peer's addresses was taken")
	}
	for _, pid := range curator.node.Keeping() {
		if pid == victim || slices.ContainsFunc(swarm, func(s *stranger) bool { return s.h.ID() == pid }) {
			t.Fatalf("the curator keeps dialling %s, named only in a stranger's announcement", pid)
		}
	}
	if err := curator.ring.SavePeerstore(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(curator.dir, peerconfig.PeerstoreFile))
	for _, s := range swarm {
		if strings.Contains(string(b), s.h.ID().String()) {
			t.Fatalf("a stranger's addresses are in the peerstore file:\n%s", b)
		}
	}
	t.Logf("after 40 strangers announced 32 addresses each: %d peers in the table, %d reconnect loops, peerstore file %d bytes",
		curator.peers.Len(), len(curator.node.Keeping()), len(b))
}

// Admitted followers that passed no audit take at most audit.unverified_cap
// replicas each, however much room they announce, and a pin that needs
// more of them is refused saying why; a pass lifts the cap for that peer
// alone. Before, an admitted newcomer could be given any number of pins
// before its first audit.
func TestUnverifiedFollowersAreCapped(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	mod := func(c *peerconfig.Config) {
		c.Monitor.Interval = config.Duration(300 * time.Millisecond)
		c.Audit.UnverifiedCap = 4
		c.Audit.Interval = 0
	}
	curator := startClusterPeerWith(t, "capped", key, nil, mod)
	addr := curator.P2PAddrs()[0].String()
	var followers []*Peer
	for range 3 {
		f := startClusterPeerWith(t, "capped", nil, []trust.PublicKey{key.Public()}, mod, addr)
		if _, err := curator.SetAdmission(ctx, f.PeerID(), false, ""); err != nil {
			t.Fatal(err)
		}
		followers = append(followers, f)
	}
	testkit.WaitFor(t, 30*time.Second, "the curator to hear every follower", func() bool {
		return len(curator.Metrics(ctx, "freespace")) == 4
	})
	got := map[peer.ID]int{}
	for i := range 20 {
		pin, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(i), Type: api.DataType, MaxDepth: -1,
			PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 4}})
		if err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
		for _, a := range pin.Allocations {
			got[a]++
		}
	}
	for _, f := range followers {
		if got[f.PeerID()] != 4 {
			t.Fatalf("follower got %d replicas, want the cap, 4 (%v)", got[f.PeerID()], got)
		}
	}
	_, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(30), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}})
	if err == nil || !strings.Contains(err.Error(), "passed no audit yet") {
		t.Fatalf("a pin needing an unverified follower: %v, want a refusal that says why", err)
	}
	if err := curator.admitted.Verify(ctx, followers[0].PeerID()); err != nil { // as a passed audit does
		t.Fatal(err)
	}
	pin, err := curator.Pin(ctx, api.Pin{Cid: testkit.Cid(30), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}})
	if err != nil || !slices.Contains(pin.Allocations, followers[0].PeerID()) {
		t.Fatalf("after the follower's first pass: %v %v, want it allocated", pin.Allocations, err)
	}
	testkit.WaitFor(t, 60*time.Second, "the verification at the follower", func() bool {
		r, ok := followers[0].admitted.Get(followers[0].PeerID())
		return ok && !r.Verified.IsZero()
	})
}
