package main

// The ring harness (issue 28): a large ring on this one machine. Every
// member is the membership side of a real peer — a libp2p host (mocknet:
// in-process links, no sockets), gossipsub with the peer's options, the
// heartbeat monitor (pubsubmon), peer announcements (membership.Ring),
// the pinset's heads topic (p2p.Broadcaster, with go-ds-crdt's periodic
// rebroadcast driven here) and the status protocol — with no Badger, no
// CRDT and no kubo. It measures what each member spends on the ring as
// the ring grows.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	blockstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	dssync "github.com/ipfs/go-datastore/sync"
	pb "github.com/ipfs/go-ds-crdt/pb"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/membership"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/status"
	"github.com/pinring/pinring/trust"
)

const ringCluster = "ring"

// ringOpts is what one size of ring runs with.
type ringOpts struct {
	followers, writers int
	pins               int
	joinRate           int           // followers joining a second (0: all at once)
	asleep             float64       // share of followers asleep
	reboots            float64       // share of online followers whose router reboots every 10 s
	warm, window       time.Duration // before measuring; measuring
	statusLimit        time.Duration
}

// traffic counts what every member received, by topic.
type traffic struct {
	mu    sync.Mutex
	msgs  map[string]int64
	bytes map[string]int64
}

func newTraffic() *traffic {
	return &traffic{msgs: map[string]int64{}, bytes: map[string]int64{}}
}

func (t *traffic) add(topic string, n int) {
	t.mu.Lock()
	t.msgs[topic]++
	t.bytes[topic] += int64(n)
	t.mu.Unlock()
}

func (t *traffic) snapshot() (map[string]int64, map[string]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps(t.msgs), maps(t.bytes)
}

func maps(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// tracer is a gossipsub raw tracer counting the RPCs a member receives:
// each published message under its topic, control messages under
// "control".
type tracer struct{ t *traffic }

func (tr tracer) RecvRPC(rpc *pubsub.RPC) {
	for _, m := range rpc.GetPublish() {
		tr.t.add(shortTopic(m.GetTopic()), proto.Size(m))
	}
	if c := rpc.GetControl(); c != nil {
		tr.t.add("control", proto.Size(c))
	}
	if subs := rpc.GetSubscriptions(); len(subs) > 0 {
		tr.t.add("subscriptions", proto.Size(&pubsubpb.RPC{Subscriptions: subs}))
	}
}
func (tracer) AddPeer(peer.ID, protocol.ID)                         {}
func (tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (tracer) OnClosedOutboundStream(peer.ID)                       {}
func (tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (tracer) RemovePeer(peer.ID)                                   {}
func (tracer) Join(string)                                          {}
func (tracer) Leave(string)                                         {}
func (tracer) Graft(peer.ID, string)                                {}
func (tracer) Prune(peer.ID, string)                                {}
func (tracer) ValidateMessage(*pubsub.Message)                      {}
func (tracer) DeliverMessage(*pubsub.Message)                       {}
func (tracer) RejectMessage(*pubsub.Message, string)                {}
func (tracer) DuplicateMessage(*pubsub.Message)                     {}
func (tracer) ThrottlePeer(peer.ID)                                 {}
func (tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (tracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (tracer) UndeliverableMessage(*pubsub.Message)                 {}

func shortTopic(t string) string { return strings.TrimPrefix(t, "/pinring/"+ringCluster+"/") }

// member is one simulated peer.
type member struct {
	i      int
	writer bool
	h      host.Host
	node   *p2p.Node
	mon    *pubsubmon.Monitor
	bc     *p2p.Broadcaster
	table  *membership.Table
	cancel context.CancelFunc
	done   sync.WaitGroup
	seen   sync.Map // head CID key → time first received
	online atomic.Bool
}

func (m *member) id() peer.ID { return m.h.ID() }

// ring is one simulated ring.
type ring struct {
	o        ringOpts
	mn       mocknet.Mocknet
	ms       []*member
	keys     trust.KeySet
	wk       *trust.WriteKey
	traffic  *traffic  // what the followers received
	wtraffic *traffic  // what the writers received
	seeded   []cid.Cid // blocks every member holds: the heads the writers announce
	pins     []api.Cid // the pinset, in CID key order
	created  time.Time // when every pin was written
	// ids are the members' peer IDs, by index, once all started.
	ids []peer.ID
}

// allocations are the two members pin k is allocated to.
func (r *ring) allocations(k int) []peer.ID {
	n := len(r.ids)
	return []peer.ID{r.ids[k%n], r.ids[(k+1)%n]}
}

func heads(c cid.Cid) []byte {
	b, _ := proto.Marshal(&pb.CRDTBroadcast{Heads: []*pb.Head{{Cid: c.Bytes()}}})
	return b
}

func newRing(ctx context.Context, o ringOpts) (*ring, error) {
	wk, err := trust.NewWriteKey()
	if err != nil {
		return nil, err
	}
	keys, err := trust.NewKeySet([]string{wk.Public().String()})
	if err != nil {
		return nil, err
	}
	r := &ring{o: o, mn: mocknet.New(), keys: keys, wk: wk, created: time.Now().Add(-time.Hour),
		traffic: newTraffic(), wtraffic: newTraffic()}
	for i := range 64 {
		c, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(fmt.Appendf(nil, "ring head %d", i))
		r.seeded = append(r.seeded, c)
	}
	for i := range o.pins {
		sum := sha256.Sum256(fmt.Appendf(nil, "ring pin %d", i))
		m, _ := mh.Encode(sum[:], mh.SHA2_256)
		r.pins = append(r.pins, api.NewCid(cid.NewCidV1(cid.DagProtobuf, m)))
	}
	slices.SortFunc(r.pins, func(a, b api.Cid) int { return strings.Compare(a.Key(), b.Key()) })
	n := o.writers + o.followers
	for i := range n {
		role := "follower"
		if i < o.writers {
			role = "writer"
		}
		var m *member
		var err error
		// Goroutines a member starts carry its role: a CPU profile of
		// the ring (-pprof ring=…) splits by it (pprof -tagfocus).
		pprof.Do(ctx, pprof.Labels("role", role), func(ctx context.Context) { m, err = r.start(ctx, i, i < o.writers) })
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		r.ms = append(r.ms, m)
	}
	for _, m := range r.ms {
		r.ids = append(r.ids, m.id())
	}
	if err := r.mn.LinkAll(); err != nil {
		return nil, err
	}
	for i := 1; i < o.writers; i++ {
		r.ms[i].node.Connect(r.addr(r.ms[0]))
	}
	// Followers bootstrap from two writers (a ticket's addresses), as
	// cluster-follow does; the rest is the ring's own doing. They join
	// o.joinRate a second (a ring grows over time; a thousand followers
	// joining in the same second is a storm no ring sees).
	gap := time.Duration(0)
	if o.joinRate > 0 {
		gap = time.Second / time.Duration(o.joinRate)
	}
	for _, m := range r.ms[o.writers:] {
		for _, w := range rand.Perm(o.writers)[:min(2, o.writers)] {
			m.node.Connect(r.addr(r.ms[w]))
		}
		time.Sleep(gap)
	}
	return r, nil
}

func (r *ring) addr(m *member) ma.Multiaddr {
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", 10000+m.i, m.id()))
}

func (r *ring) start(ctx context.Context, i int, writer bool) (*member, error) {
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	h, err := r.mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i)))
	if err != nil {
		return nil, err
	}
	store := dssync.MutexWrap(ds.NewMapDatastore())
	bs := blockstore.NewBlockstore(namespace.Wrap(store, ds.NewKey("/blocks")))
	for _, c := range r.seeded {
		b, _ := blocks.NewBlockWithCid(fmt.Appendf(nil, "ring head %d", slices.Index(r.seeded, c)), c)
		if err := bs.Put(ctx, b); err != nil {
			return nil, err
		}
	}
	mctx, cancel := context.WithCancel(ctx)
	tr := tracer{r.traffic}
	if writer {
		tr.t = r.wtraffic
	}
	node, err := p2p.New(mctx, p2p.Config{Key: sk, Host: h, Store: store, BlocksNamespace: "/blocks", Follower: !writer,
		PubSubOptions: []pubsub.Option{pubsub.WithRawTracer(tr)}})
	if err != nil {
		cancel()
		return nil, err
	}
	m := &member{i: i, writer: writer, h: h, node: node, cancel: cancel, table: membership.New()}
	m.online.Store(true)
	ns := "/pinring/" + ringCluster
	name := fmt.Sprintf("follower%d", i)
	role := api.RoleFollower
	var signer *trust.Signer
	if writer {
		name, role = fmt.Sprintf("writer%d", i), api.RoleWriter
		signer = trust.NewSigner(r.wk, ringCluster, string(h.ID()))
	}
	kubo := api.IPFSID{ID: h.ID(), Addresses: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}}
	me := func(context.Context) api.ID {
		cps := []peer.ID{h.ID()}
		for _, e := range m.table.Entries() {
			cps = append(cps, e.ID.ID)
		}
		id := api.ID{ID: h.ID(), Addresses: node.P2PAddrs(), ClusterPeers: cps, Version: api.Version,
			RPCProtocolVersion: "/pinring/rpc/0.1.0", IPFS: kubo, Peername: name, Cluster: ringCluster, Role: role}
		if writer {
			id.WriteKey = r.wk.Public().String()
			id.WriteKeyProof = r.wk.Endorse(ringCluster, h.ID().String())
		}
		return id
	}
	rg := &membership.Ring{Table: m.table, Self: h.ID(), Cluster: ringCluster, Keys: r.keys,
		Member: func(peer.ID) bool { return true }, // admission open, the default
		Me:     me, Connect: node.Connect,
		Connected: func(pid peer.ID) bool { return h.Network().Connectedness(pid) == network.Connected },
		Keeping:   func() int { return len(node.Keeping()) }, Addrs: h.Peerstore().Addrs,
		KuboID:    func() api.IPFSID { return kubo },
		DialKubo:  func(context.Context, ...ma.Multiaddr) error { return nil },
		KuboPeers: func(context.Context) ([]peer.ID, error) { return nil, nil },
		Peers:     h.Network().Peers}
	proof := p2p.KeyProof{Cluster: ringCluster, Self: h.ID(), Endorsed: rg.Endorsed, Writer: m.table.Writer}
	if writer {
		proof.Key = r.wk
		p2p.ServePeers(h, proof, func() []api.ID { return rg.Relay(mctx) })
	}
	rg.AskPeers = func(ctx context.Context, pid peer.ID) ([]json.RawMessage, error) {
		return p2p.AskPeers(ctx, h, pid, proof)
	}
	ps := node.PubSub
	peersTopics, err := membership.JoinTopics(ps, ns, p2p.TopicScore())
	if err != nil {
		return nil, err
	}
	m.mon, err = pubsubmon.New(mctx, pubsubmon.DefaultConfig(), pubsubmon.Deps{PubSub: ps, Topic: ns + "/metrics",
		Self: h.ID(), Peername: name, Score: p2p.TopicScore(), Member: func(peer.ID) bool { return true },
		Writer: func(pid peer.ID) bool { return pid == h.ID() && writer || m.table.Writer(pid) }, Members: m.table.Len,
		Collect: func(context.Context) []api.Metric {
			// One follower in a hundred has work outstanding.
			queued := "0"
			if !writer && i%100 == 7 {
				queued = "3"
			}
			return []api.Metric{{Name: pubsubmon.MetricFreeSpace, Value: "9000000000"}, {Name: pubsubmon.MetricPinned, Value: "200"},
				{Name: pubsubmon.MetricQueued, Value: queued}, {Name: pubsubmon.MetricFull, Value: "false"},
				{Name: pubsubmon.MetricAbsorbed, Value: strconv.FormatInt(r.created.UnixNano(), 10)},
				{Name: pubsubmon.MetricRepoSize, Value: "1000000000"}, {Name: pubsubmon.MetricRepoMax, Value: "10000000000"},
				{Name: pubsubmon.MetricEpoch, Value: "0"}}
		}})
	if err != nil {
		return nil, err
	}
	rg.Reported = m.mon.ReportedMembers
	p2p.ServeMetrics(h, m.mon.Latest)
	// As a peer does (peer.go): a member this one has no connection
	// left to is down an interval later unless a heartbeat comes.
	m.mon.WatchDisconnects(h.Network())
	m.bc, err = node.NewBroadcaster(ns+"/heads", signer, trust.NewVerifier(ringCluster, r.keys))
	if err != nil {
		return nil, err
	}
	// The status protocol: this member's status of every pin, pinned
	// where the pin is allocated to it (two members a pin), remote
	// elsewhere, as a tracker reports.
	n := r.o.writers + r.o.followers
	info := func(k int, c api.Cid) api.PinInfo {
		st := api.StatusRemote
		if k%n == i || (k+1)%n == i {
			st = api.StatusPinned
		}
		return api.PinInfo{Cid: c, Peer: h.ID(), Allocations: r.allocations(k), Created: r.created,
			PinInfoShort: api.PinInfoShort{PeerName: name, Status: st, TS: time.Now()}}
	}
	p2p.ServeStatus(h, func(_ context.Context, c api.Cid) api.PinInfo {
		k := sort.Search(len(r.pins), func(j int) bool { return r.pins[j].Key() >= c.Key() })
		return info(k, c)
	}, func(ctx context.Context, fn func(api.PinInfo) error) error {
		for k, c := range r.pins {
			if err := fn(info(k, c)); err != nil {
				return err
			}
		}
		return nil
	})
	m.done.Add(3)
	go func() {
		defer m.done.Done()
		if err := rg.Announce(mctx, peersTopics, writer, 10*time.Second); err != nil && mctx.Err() == nil {
			fmt.Println("ring: announcing:", err)
		}
	}()
	go func() { // what go-ds-crdt does with the broadcaster
		defer m.done.Done()
		for {
			b, err := m.bc.Next(mctx)
			if err != nil {
				return
			}
			var bc pb.CRDTBroadcast
			if proto.Unmarshal(b, &bc) == nil {
				now := time.Now()
				for _, hd := range bc.GetHeads() {
					m.seen.LoadOrStore(string(hd.GetCid()), now)
				}
			}
		}
	}()
	go func() { // go-ds-crdt's rebroadcast: every 5 s (state.rebroadcast_interval)
		defer m.done.Done()
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-mctx.Done():
				return
			case <-tick.C:
				m.bc.Broadcast(mctx, heads(r.seeded[0]))
			}
		}
	}()
	return m, nil
}

// stop puts a member to sleep: its loops end and its links are cut
// (its host stays, idle, until the ring ends with the process).
func (r *ring) stop(m *member) {
	if !m.online.Swap(false) {
		return
	}
	m.cancel()
	for _, o := range r.ms {
		if o != m {
			r.mn.UnlinkPeers(m.id(), o.id())
		}
	}
	for _, pid := range m.h.Network().Peers() {
		r.mn.DisconnectPeers(m.id(), pid)
	}
}

func (r *ring) online() []*member {
	var out []*member
	for _, m := range r.ms {
		if m.online.Load() {
			out = append(out, m)
		}
	}
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ringRow is one line of the harness's table.
type ringRow struct {
	Peers, Online int
	PerTopic      map[string][2]float64 // msgs, bytes per online follower per minute
	Writers       int
	Conns         float64 // connections an online follower has, on average
	WriterConns   float64 // and a writer
	WriterMsgs    float64 // messages per writer per minute, every topic
	WriterKiB     float64
	CPU           float64 // % of a core per online peer
	Busy          float64 // cores the whole process kept busy
	Mem           float64 // heap MiB per peer
	Write99       time.Duration
	WriteReached  string
	Status        time.Duration // at writer 0
	StatusPins    int
	StatusNote    string
	FStatus       time.Duration // at a follower
	FStatusPins   int
	FStatusNote   string
	FollowerQuiet bool
	Detect        time.Duration
	Grace         time.Duration
}

// runRing measures each size in a process of its own (a ring's hosts
// are never closed: the process ends instead), and prints the table.
func runRing(sizes []int, o ringOpts) error {
	if len(sizes) == 1 && os.Getenv("PINRING_RING_CHILD") != "" {
		o.followers = sizes[0]
		row, err := measureRing(o)
		if err != nil {
			return err
		}
		b, err := json.Marshal(row)
		if err != nil {
			return err
		}
		fmt.Printf("ringrow %s\n", b)
		return nil
	}
	var rows []ringRow
	for _, n := range sizes {
		fmt.Printf("ring: %d followers + %d writers, %d pins: starting\n", n, o.writers, o.pins)
		args := slices.Clone(os.Args[1:])
		for i, a := range args {
			if strings.HasPrefix(a, "-ring=") || strings.HasPrefix(a, "--ring=") {
				args[i] = "-ring=" + strconv.Itoa(n)
			} else if (a == "-ring" || a == "--ring") && i+1 < len(args) {
				args[i+1] = strconv.Itoa(n)
			}
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "PINRING_RING_CHILD=1")
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		var row *ringRow
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if js, ok := strings.CutPrefix(sc.Text(), "ringrow "); ok {
				row = new(ringRow)
				if err := json.Unmarshal([]byte(js), row); err != nil {
					return err
				}
				continue
			}
			fmt.Println(sc.Text())
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("ring of %d followers: %w", n, err)
		}
		if row == nil {
			return fmt.Errorf("ring of %d followers: no figures", n)
		}
		rows = append(rows, *row)
		printRing(rows)
	}
	return nil
}

func measureRing(o ringOpts) (ringRow, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	r, err := newRing(ctx, o)
	if err != nil {
		return ringRow{}, err
	}
	fmt.Printf("ring: started in %s; warming up %s\n", time.Since(began).Round(time.Millisecond), o.warm)
	time.Sleep(o.warm / 2)
	// A share of the followers goes to sleep: the ring knows them.
	asleep := int(float64(o.followers) * o.asleep)
	for _, m := range r.ms[len(r.ms)-asleep:] {
		r.stop(m)
	}
	time.Sleep(o.warm / 2)
	row := ringRow{Peers: len(r.ms), Online: len(r.online())}

	// The window: routers reboot (a follower's connections all drop; it
	// reconnects by itself) while the counters run.
	msgs0, bytes0 := r.traffic.snapshot()
	wmsgs0, wbytes0 := r.wtraffic.snapshot()
	cpu0, t0 := cpuTime(), time.Now()
	stopReboots := make(chan struct{})
	var rebooted atomic.Int64
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopReboots:
				return
			case <-tick.C:
			}
			on := r.online()
			for range int(math.Ceil(float64(len(on)) * o.reboots)) {
				m := on[rand.IntN(len(on))]
				if m.writer {
					continue
				}
				for _, c := range m.node.Host.Network().Conns() {
					c.Close()
				}
				rebooted.Add(1)
			}
		}
	}()
	time.Sleep(o.window)
	close(stopReboots)
	cpu1, t1 := cpuTime(), time.Now()
	msgs1, bytes1 := r.traffic.snapshot()
	wmsgs1, wbytes1 := r.wtraffic.snapshot()
	minutes := t1.Sub(t0).Minutes()
	on := float64(row.Online)
	row.Writers = o.writers
	onf := on - float64(o.writers) // online followers
	row.PerTopic = map[string][2]float64{}
	for k := range msgs1 {
		row.PerTopic[k] = [2]float64{float64(msgs1[k]-msgs0[k]) / onf / minutes, float64(bytes1[k]-bytes0[k]) / onf / minutes}
	}
	for k := range wmsgs1 {
		row.WriterMsgs += float64(wmsgs1[k]-wmsgs0[k]) / float64(o.writers) / minutes
		row.WriterKiB += float64(wbytes1[k]-wbytes0[k]) / 1024 / float64(o.writers) / minutes
	}
	row.CPU = 100 * float64(cpu1-cpu0) / float64(t1.Sub(t0)) / on
	for _, m := range r.online() {
		if n := float64(len(m.h.Network().Peers())); m.writer {
			row.WriterConns += n / float64(o.writers)
		} else {
			row.Conns += n / onf
		}
	}
	row.Busy = float64(cpu1-cpu0) / float64(t1.Sub(t0))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	row.Mem = float64(ms.HeapInuse) / (1 << 20) / float64(len(r.ms))
	fmt.Printf("ring: window of %s done (%d router reboots); connections: %.0f a follower, %.0f a writer\n",
		t1.Sub(t0).Round(time.Second), rebooted.Load(), row.Conns, row.WriterConns)

	// A curator's write: writer 0 announces new heads; the time until 99 %
	// of the online followers have them (the median of 3 writes).
	var lats []time.Duration
	for w := 1; w <= 3; w++ {
		head := r.seeded[w]
		at := time.Now()
		r.ms[0].bc.Broadcast(ctx, heads(head))
		var followers []*member
		for _, m := range r.online() {
			if !m.writer {
				followers = append(followers, m)
			}
		}
		need := (len(followers)*99 + 99) / 100
		deadline := at.Add(30 * time.Second)
		var got []time.Duration
		for time.Now().Before(deadline) {
			got = got[:0]
			for _, m := range followers {
				if v, ok := m.seen.Load(string(head.Bytes())); ok {
					got = append(got, v.(time.Time).Sub(at))
				}
			}
			if len(got) >= need {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		slices.Sort(got)
		if len(got) >= need {
			lats = append(lats, got[need-1])
		} else {
			lats = append(lats, -1)
			row.WriteReached = fmt.Sprintf("%d/%d in 30s", len(got), len(followers))
			for _, m := range followers {
				if _, ok := m.seen.Load(string(head.Bytes())); !ok {
					nw := m.node.Host.Network()
					ws := 0
					for _, w := range r.ms[:o.writers] {
						if nw.Connectedness(w.id()) == network.Connected {
							ws++
						}
					}
					fmt.Printf("ring: write %d not at member %d: %d connections (%d writers), keeping %d, %d in its table, heads topic peers %d\n",
						w, m.i, len(nw.Peers()), ws, len(m.node.Keeping()), m.table.Len(), len(m.node.PubSub.ListPeers("/pinring/"+ringCluster+"/heads")))
				}
			}
		}
	}
	slices.Sort(lats)
	row.Write99 = lats[len(lats)/2]

	// Global status, as GET /pins asks it at writer 0 (every peer it
	// knows), then at a follower, which in a large ring hears the
	// writers' heartbeats only and asks a writer for the table.
	w := r.ms[0]
	row.Status, row.StatusPins, row.StatusNote = r.globalStatus(ctx, w, o.statusLimit)
	var f *member
	for _, m := range r.online() {
		if !m.writer {
			f = m
			break
		}
	}
	row.FollowerQuiet = f.mon.Quiet()
	row.FStatus, row.FStatusPins, row.FStatusNote = r.globalStatus(ctx, f, o.statusLimit)

	// A follower dies: the time until writer 0's monitor counts it dead
	// for the repair but for the grace (Dead(0): its heartbeat was due and
	// did not come); the repair moves its pins repair.Grace later. Alerts
	// come when its ping expires, a gossip margin after (≤ 2 s).
	victim := r.online()[len(r.online())-1]
	died := time.Now()
	r.stop(victim)
	for time.Since(died) < 5*time.Minute {
		if w.mon.Dead(0)[victim.id()] {
			row.Detect = time.Since(died)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	row.Grace = time.Minute // repair.Grace's default
	return row, nil
}

// globalStatus times GET /pins at m, through status.Global as the peer
// runs it: the answer's pins, or a note of why it stopped.
func (r *ring) globalStatus(ctx context.Context, m *member, limit time.Duration) (took time.Duration, pins int, note string) {
	g := status.Global{Self: m.id(),
		Others: func() []peer.ID {
			return slices.DeleteFunc(m.table.IDs(), func(id peer.ID) bool { return id == m.id() })
		},
		Ask: func(ctx context.Context, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error {
			return p2p.AskStatus(ctx, m.node.Host, pid, c, fn)
		},
		Peername: m.table.Peername,
		Summary:  status.FromHeartbeats(m.mon)}
	if m.mon.Quiet() { // as peer.ringMetrics: a writer's table
		g.Summary = status.FromMetrics(func() []api.Metric {
			for _, w := range r.ms[:r.o.writers] {
				if ms, err := p2p.AskMetrics(ctx, m.node.Host, w.id(), status.SummaryMetrics); err == nil {
					return ms
				}
			}
			return nil
		})
	}
	g.LocalAll = func(ctx context.Context, fn func(api.PinInfo) error) error {
		for k, c := range r.pins {
			if err := fn(api.PinInfo{Cid: c, Peer: m.id(), Allocations: r.allocations(k), Created: r.created,
				PinInfoShort: api.PinInfoShort{Status: api.StatusRemote, TS: time.Now()}}); err != nil {
				return err
			}
		}
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	st := time.Now()
	unknown := 0 // statuses of peers no heartbeat is known of
	who := map[string]bool{}
	err := g.All(sctx, nil, func(gpi api.GlobalPinInfo) error {
		pins++
		for pid, pi := range gpi.PeerMap {
			if pi.Status == api.StatusClusterError && strings.HasPrefix(pi.Error, "no heartbeat") {
				unknown++
				who[pid] = true
			}
		}
		return nil
	})
	for pid := range who { // why: who it is, and its links to the writers
		for _, o := range r.ms {
			if o.id().String() == pid {
				links := 0
				for _, w := range r.ms[:r.o.writers] {
					if o.h.Network().Connectedness(w.id()) == network.Connected {
						links++
					}
				}
				fmt.Printf("ring: no heartbeat known at %s of member %d (writer %v, online %v, quiet %v, connected to %d writers)\n",
					m.h.ID(), o.i, o.writer, o.online.Load(), o.mon.Quiet(), links)
			}
		}
	}
	took = time.Since(st)
	if err != nil {
		note = err.Error()
		if errors.Is(err, context.DeadlineExceeded) || sctx.Err() != nil {
			note = fmt.Sprintf("stopped at %s", limit)
		}
	}
	if unknown > 0 {
		note = strings.TrimPrefix(note+fmt.Sprintf("; %d statuses of peers whose heartbeats are unknown", unknown), "; ")
	}
	return took, pins, note
}

func printRing(rows []ringRow) {
	topics := map[string]bool{}
	for _, r := range rows {
		for k := range r.PerTopic {
			topics[k] = true
		}
	}
	names := make([]string, 0, len(topics))
	for k := range topics {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Println("\nring: per online follower per minute, received (messages / KiB), by topic; per writer, every topic; then CPU and heap per peer (the process's, writers' work included), write reach, global status, death")
	fmt.Printf("| peers (online) |")
	for _, k := range names {
		fmt.Printf(" %s |", k)
	}
	fmt.Println(" a writer, every topic | CPU % of a core | heap MiB | write → 99 % of followers | GET /pins at a writer | GET /pins at a follower | follower death → due (repair after + grace) |")
	fmt.Print("|---|")
	for range names {
		fmt.Print("---|")
	}
	fmt.Println("---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %d (%d) |", r.Peers, r.Online)
		for _, k := range names {
			v := r.PerTopic[k]
			fmt.Printf(" %.0f / %.0f |", v[0], v[1]/1024)
		}
		write := r.Write99.Round(time.Millisecond).String()
		if r.Write99 < 0 {
			write = "not reached: " + r.WriteReached
		}
		stat := fmt.Sprintf("%s (%d pins)", r.Status.Round(time.Millisecond), r.StatusPins)
		if r.StatusNote != "" {
			stat += ": " + r.StatusNote
		}
		fstat := fmt.Sprintf("%s (%d pins)", r.FStatus.Round(time.Millisecond), r.FStatusPins)
		if r.FStatusNote != "" {
			fstat += ": " + r.FStatusNote
		}
		if r.FollowerQuiet {
			fstat += ", quiet"
		}
		detect := "not seen"
		if r.Detect > 0 {
			detect = fmt.Sprintf("%s (+ %s)", r.Detect.Round(time.Second), r.Grace)
		}
		cpu := fmt.Sprintf("%.2f", r.CPU)
		if r.Busy > 0.9*float64(runtime.NumCPU()) {
			cpu += fmt.Sprintf(" (a floor: %.2f of %d cores busy)", r.Busy, runtime.NumCPU())
		}
		fmt.Printf(" %.0f / %.0f | %s | %.1f | %s | %s | %s | %s |\n", r.WriterMsgs, r.WriterKiB, cpu, r.Mem, write, stat, fstat, detect)
	}
	fmt.Println()
}
