package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/trust"
)

// replica is one peer's node and pinset on a mocknet host.
type replica struct {
	node  *Node
	bcast *Broadcaster
	state *crdtstate.State
	stop  context.CancelFunc
}

// testCluster is the cluster name and write key the replicas share.
type testCluster struct {
	name string
	key  *trust.WriteKey
	keys trust.KeySet
}

func newTestCluster(t *testing.T, name string) testCluster {
	t.Helper()
	k, err := trust.NewWriteKey()
	if err != nil {
		t.Fatal(err)
	}
	return testCluster{name: name, key: k, keys: trust.KeySet{}.With(k.Public())}
}

// newReplica starts a writer of tc.
func newReplica(t *testing.T, mn mocknet.Mocknet, tc testCluster) *replica {
	t.Helper()
	return newReplicaWith(t, mn, tc.name, tc.key, tc.keys)
}

// newReplicaWith starts a replica of cluster that signs with signWith (nil:
// a follower) and accepts envelopes signed by trusted.
func newReplicaWith(t *testing.T, mn mocknet.Mocknet, cluster string, signWith *trust.WriteKey, trusted trust.KeySet) *replica {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	store := dssync.MutexWrap(ds.NewMapDatastore())
	ctx, cancel := context.WithCancel(context.Background())
	node, err := New(ctx, Config{Host: h, Store: store, BlocksNamespace: "/pinring/test/blocks"})
	if err != nil {
		t.Fatal(err)
	}
	var signer *trust.Signer
	if signWith != nil {
		signer = trust.NewSigner(signWith, cluster, string(h.ID()))
	}
	bc, err := node.NewBroadcaster("/pinring/test/heads", signer, trust.NewVerifier(cluster, trusted))
	if err != nil {
		t.Fatal(err)
	}
	cfg := crdtstate.DefaultConfig()
	cfg.RebroadcastInterval = config.Duration(500 * time.Millisecond)
	cfg.RepairInterval = config.Duration(time.Second)
	st, err := crdtstate.New(ctx, cfg, crdtstate.Deps{Store: store, Namespace: "/pinring/test/state", JournalDir: t.TempDir(), DAG: node.DAG, Broadcaster: bc})
	if err != nil {
		t.Fatal(err)
	}
	bc.Height = func() uint64 { return st.Height(ctx) }
	r := &replica{node: node, bcast: bc, state: st, stop: cancel}
	t.Cleanup(func() {
		cancel() // the broadcaster first, then the store, then the node
		st.Close()
		node.Close()
	})
	return r
}

func pinN(i int) *api.Pin {
	h, _ := mh.Sum(fmt.Appendf(nil, "mocknet-%d", i), mh.SHA2_256, -1)
	return &api.Pin{Cid: api.NewCid(cid.NewCidV1(cid.Raw, h)), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
}

func digest(t *testing.T, r *replica) api.StateDigest {
	d, err := r.state.Digest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitConverged waits until every replica has the same digest with want pins.
func waitConverged(t *testing.T, want uint64, rs ...*replica) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		first := digest(t, rs[0])
		same := first.Pins == want
		for _, r := range rs[1:] {
			same = same && digest(t, r) == first
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			for i, r := range rs {
				t.Logf("replica %d: %+v", i, digest(t, r))
			}
			t.Fatalf("replicas did not converge on %d pins", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func connectAll(t *testing.T, mn mocknet.Mocknet) {
	t.Helper()
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentWritersConverge(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	rs := []*replica{newReplica(t, mn, tc), newReplica(t, mn, tc), newReplica(t, mn, tc)}
	connectAll(t, mn)
	time.Sleep(200 * time.Millisecond) // let gossipsub meshes form
	ctx := context.Background()
	errc := make(chan error, 3)
	for i, r := range rs {
		go func() {
			for j := range 100 {
				if err := r.state.Add(ctx, pinN(i*1000+j)); err != nil {
					errc <- err
					return
				}
			}
			// Each also removes one of its own and one shared pin.
			if err := r.state.Rm(ctx, pinN(i*1000).Cid); err != nil {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	for range rs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 297, rs...)
}

func TestMissedMessagesAndPartitionHeal(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	a, b, c := newReplica(t, mn, tc), newReplica(t, mn, tc), newReplica(t, mn, tc)
	connectAll(t, mn)
	time.Sleep(200 * time.Millisecond)
	ctx := context.Background()
	if err := a.state.Add(ctx, pinN(1)); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 1, a, b, c)

	// Cut c off: it misses what a and b write; c writes on its own side.
	for _, other := range []*replica{a, b} {
		if err := mn.UnlinkPeers(c.node.Host.ID(), other.node.Host.ID()); err != nil {
			t.Fatal(err)
		}
		mn.DisconnectPeers(c.node.Host.ID(), other.node.Host.ID())
	}
	for i := 2; i < 50; i++ {
		if err := a.state.Add(ctx, pinN(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.state.Add(ctx, pinN(500)); err != nil {
		t.Fatal(err)
	}
	if digest(t, c).Pins != 2 {
		t.Fatalf("the partitioned replica saw writes: %+v", digest(t, c))
	}
	connectAll(t, mn) // the partition heals
	waitConverged(t, 50, a, b, c)
}

func TestLateJoinerSyncsEverything(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	tc := newTestCluster(t, "test")
	a, b := newReplica(t, mn, tc), newReplica(t, mn, tc)
	connectAll(t, mn)
	ctx := context.Background()
	errc := make(chan error, 8)
	for w := range 8 { // concurrent writers: batched deltas
		go func() {
			for j := range 250 {
				if err := a.state.Add(ctx, pinN(w*1000+j)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 2000, a, b)
	late := newReplicaWith(t, mn, tc.name, nil, tc.keys) // a follower

	connectAll(t, mn)
	start := time.Now()
	waitConverged(t, 2000, a, b, late)
	t.Logf("late joiner holds 2000 pins after %s", time.Since(start))
}
