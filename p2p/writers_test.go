package p2p

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/internal/testkit"
)

// store keeps the blocks put in it.
type store struct {
	mu     sync.Mutex
	blocks int
}

func (s *store) BlockPutMany(_ context.Context, blocks [][]byte, _, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocks += len(blocks)
	return nil
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocks
}

// proof is a WriterProof where a peer proves itself by naming itself, and
// only the peers in writers pass.
type proof struct {
	self    peer.ID
	writers map[peer.ID]bool
}

func (p proof) Write(w io.Writer) error { return frame.Write(w, []byte(p.self)) }
func (p proof) Known(pid peer.ID) bool  { return p.writers[pid] }
func (p proof) Check(r *bufio.Reader, from peer.ID) error {
	b, err := frame.Read(r, 128)
	if err != nil {
		return err
	}
	if peer.ID(b) != from || !p.writers[from] {
		return errors.New("not a writer")
	}
	return nil
}

// Blocks pushed by a writer reach the receiver's store; a peer that is not
// a writer is refused before it can store anything (it could fill a
// volunteer's disk), and its own store still gets the blocks.
func TestBlockPushOnlyFromWriters(t *testing.T) {
	hs := connectedHosts(t, 3)
	writer, stranger, receiver := hs[0], hs[1], hs[2]
	writers := map[peer.ID]bool{writer.ID(): true}
	got := &store{}
	ctx := context.Background()
	ServeBlockPush(ctx, receiver, proof{receiver.ID(), writers}, got, time.Minute)
	blocks := [][]byte{[]byte("a"), []byte("b")}

	local := &store{}
	f := NewFanout(writer, proof{writer.ID(), writers}, local, []peer.ID{writer.ID(), receiver.ID()})
	if err := f.BlockPutMany(ctx, blocks, "raw", "sha2-256"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if local.count() != 2 {
		t.Fatalf("the writer's own kubo got %d blocks", local.count())
	}
	testkit.WaitFor(t, 10*time.Second, "the receiver to store the pushed blocks", func() bool { return got.count() == 2 })

	mine := &store{}
	f = NewFanout(stranger, proof{stranger.ID(), writers}, mine, []peer.ID{receiver.ID()})
	if err := f.BlockPutMany(ctx, blocks, "raw", "sha2-256"); err != nil {
		t.Fatalf("a refused push must not fail the add: %v", err)
	}
	f.Close()
	if mine.count() != 2 {
		t.Fatalf("the stranger's own store got %d blocks", mine.count())
	}
	if f.remote[0].err == nil {
		t.Fatal("the stranger's push was not refused")
	}
	if got.count() != 2 {
		t.Fatalf("the receiver stored %d blocks; a stranger's push reached it", got.count())
	}
}

// A push batch over maxPushBatchBytes (even from a writer) is refused
// before it is all in memory; the receiver stores none of it. Before, a
// batch could hold 4096 blocks of 4 MiB.
func TestBlockPushBatchIsBounded(t *testing.T) {
	hs := connectedHosts(t, 2)
	writer, receiver := hs[0], hs[1]
	writers := map[peer.ID]bool{writer.ID(): true}
	got := &store{}
	ctx := context.Background()
	ServeBlockPush(ctx, receiver, proof{receiver.ID(), writers}, got, time.Minute)
	big := make([][]byte, 12) // 48 MiB
	for i := range big {
		big[i] = make([]byte, 4<<20)
		big[i][0] = byte(i)
	}
	f := NewFanout(writer, proof{writer.ID(), writers}, &store{}, []peer.ID{receiver.ID()})
	f.BlockPutMany(ctx, big, "raw", "sha2-256")
	f.Close()
	if f.remote[0].err == nil {
		t.Fatal("a 48 MiB batch was taken")
	}
	if got.count() != 0 {
		t.Fatalf("the receiver stored %d blocks of an oversized batch", got.count())
	}
}

// Only writers may make another peer's kubo collect garbage; a stranger is
// told why not, and nothing is collected.
func TestRepoGCOnlyFromWriters(t *testing.T) {
	hs := connectedHosts(t, 3)
	writer, stranger, target := hs[0], hs[1], hs[2]
	writers := map[peer.ID]bool{writer.ID(): true}
	var mu sync.Mutex
	collected := 0
	ctx := context.Background()
	ServeRepoGC(ctx, target, proof{target.ID(), writers}, func(context.Context) api.RepoGC {
		mu.Lock()
		collected++
		mu.Unlock()
		return api.RepoGC{Peer: target.ID(), Keys: []api.IPFSRepoGC{{Key: testkit.Cid(1)}}}
	}, func(reason string) api.RepoGC { return api.RepoGC{Peer: target.ID(), Error: reason} })

	r, err := AskRepoGC(ctx, writer, proof{writer.ID(), writers}, target.ID())
	if err != nil || r.Error != "" || len(r.Keys) != 1 {
		t.Fatalf("a writer's request: %+v, %v", r, err)
	}
	r, err = AskRepoGC(ctx, stranger, proof{stranger.ID(), writers}, target.ID())
	if err != nil || r.Error == "" || len(r.Keys) != 0 {
		t.Fatalf("a stranger's request: %+v, %v", r, err)
	}
	// Gathered: this peer's own, the target's, and an entry saying why a
	// peer that is not there answered nothing.
	gone := testkit.PeerID(t, 9)
	g := GatherRepoGC(ctx, writer, proof{writer.ID(), writers}, []peer.ID{target.ID(), gone},
		func(pid peer.ID) string { return map[peer.ID]string{gone: "gone"}[pid] },
		func(context.Context) api.RepoGC { return api.RepoGC{Peer: writer.ID()} })
	if len(g.PeerMap) != 3 || len(g.PeerMap[target.ID().String()].Keys) != 1 || g.PeerMap[writer.ID().String()].Error != "" ||
		g.PeerMap[gone.String()].Error == "" || g.PeerMap[gone.String()].Peername != "gone" {
		t.Fatalf("gathered %+v: want this peer's, the target's, and the absent peer's error, named", g.PeerMap)
	}
	mu.Lock()
	defer mu.Unlock()
	if collected != 2 {
		t.Fatalf("collected %d times, want twice (the writer's, asked and gathered)", collected)
	}
}

// A stranger that opens a garbage-collection stream and sends nothing
// holds no writer back, and a second writer's request while a collection
// runs is told so instead of being reset.
func TestRepoGCSlotsAreNotHeldByAStranger(t *testing.T) {
	hs := connectedHosts(t, 4)
	writer, other, stranger, target := hs[0], hs[1], hs[2], hs[3]
	writers := map[peer.ID]bool{writer.ID(): true, other.ID(): true}
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	ServeRepoGC(ctx, target, proof{target.ID(), writers}, func(context.Context) api.RepoGC {
		close(started)
		<-release
		return api.RepoGC{Peer: target.ID(), Keys: []api.IPFSRepoGC{{Key: testkit.Cid(1)}}}
	}, func(reason string) api.RepoGC { return api.RepoGC{Peer: target.ID(), Error: reason} })

	// The stranger opens a stream and stays silent.
	silent, err := stranger.NewStream(ctx, target.ID(), RepoGC.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Reset()
	if _, err := silent.Write(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)

	answer := make(chan error, 1)
	go func() {
		r, err := AskRepoGC(ctx, writer, proof{writer.ID(), writers}, target.ID())
		if err == nil && (r.Error != "" || len(r.Keys) != 1) {
			err = errors.New("answer " + r.Error)
		}
		answer <- err
	}()
	select {
	case <-started:
	case err := <-answer:
		t.Fatalf("the writer's request ended before collecting: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a silent stranger kept the writer's collection from starting")
	}
	r, err := AskRepoGC(ctx, other, proof{other.ID(), writers}, target.ID())
	if err != nil || !strings.Contains(r.Error, "already running") {
		t.Fatalf("a second writer during a collection: %+v, %v; want a busy answer", r, err)
	}
	close(release)
	if err := <-answer; err != nil {
		t.Fatalf("the writer's request: %v", err)
	}
}

// A status answer is checked to be the asked peer's own: one that speaks
// for another peer fails the request instead of being merged.
func TestStatusAnswersAreTheAskedPeers(t *testing.T) {
	hs := connectedHosts(t, 2)
	asker, answerer := hs[0], hs[1]
	speakAs := answerer.ID()
	info := func(c api.Cid) api.PinInfo {
		return api.PinInfo{Cid: c, Peer: speakAs, PinInfoShort: api.PinInfoShort{Status: api.StatusPinned}}
	}
	ServeStatus(answerer, func(_ context.Context, c api.Cid) api.PinInfo { return info(c) },
		func(_ context.Context, fn func(api.PinInfo) error) error {
			for i := range 3 {
				if err := fn(info(testkit.Cid(i))); err != nil {
					return err
				}
			}
			return nil
		})
	ctx := context.Background()
	var got []api.PinInfo
	collect := func(pi api.PinInfo) error { got = append(got, pi); return nil }
	if err := AskStatus(ctx, asker, answerer.ID(), testkit.Cid(7), collect); err != nil || len(got) != 1 || !got[0].Cid.Equals(testkit.Cid(7).Cid) {
		t.Fatalf("one CID: %+v, %v", got, err)
	}
	got = nil
	if err := AskStatus(ctx, asker, answerer.ID(), api.Cid{}, collect); err != nil || len(got) != 3 {
		t.Fatalf("every pin: %d answers, %v", len(got), err)
	}
	speakAs = asker.ID() // the answerer now claims to be someone else
	if err := AskStatus(ctx, asker, answerer.ID(), api.Cid{}, func(api.PinInfo) error { return nil }); err == nil {
		t.Fatal("an answer for another peer was accepted")
	}
}

// connectedHosts are n mocknet hosts, each connected to every other.
func connectedHosts(t *testing.T, n int) []host.Host {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	var hs []host.Host
	for range n {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return hs
}

// A snapshot comes only from a writer of the same cluster: a follower
// refuses and names the writers it knows, another cluster refuses, and a
// server that cannot prove a write key is not loaded from.
func TestSnapshotOnlyFromWriters(t *testing.T) {
	hs := connectedHosts(t, 4)
	asker, writer, follower, impostor := hs[0], hs[1], hs[2], hs[3]
	writers := map[peer.ID]bool{writer.ID(): true}
	ctx := context.Background()
	body := []byte("the pinset")
	serve := func(h host.Host, proof WriterProof) {
		ServeSnapshot(ctx, h, SnapshotServer{Cluster: "ring", Writer: proof,
			Writers: func() []string { return []string{"/ip4/127.0.0.1/tcp/1/p2p/" + writer.ID().String()} },
			Write:   func(_ context.Context, w io.Writer) error { _, err := w.Write(body); return err }})
	}
	serve(writer, proof{writer.ID(), writers})
	serve(follower, nil)
	serve(impostor, proof{impostor.ID(), writers}) // proves a key the asker does not trust
	check := proof{asker.ID(), writers}
	var got []byte
	load := func(r io.Reader, _ *atomic.Int64) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	}
	if err := AskSnapshot(ctx, asker, writer.ID(), "ring", check, load); err != nil || string(got) != "the pinset" {
		t.Fatalf("from the writer: %q, %v", got, err)
	}
	got = nil
	var refusal *SnapshotRefusal
	err := AskSnapshot(ctx, asker, follower.ID(), "ring", check, load)
	if !errors.As(err, &refusal) || !refusal.Follower || len(refusal.Writers) != 1 || got != nil {
		t.Fatalf("from a follower: %v (%+v)", err, refusal)
	}
	err = AskSnapshot(ctx, asker, writer.ID(), "other", check, load)
	if !errors.As(err, &refusal) || refusal.Follower || got != nil {
		t.Fatalf("another cluster: %v", err)
	}
	if err := AskSnapshot(ctx, asker, impostor.ID(), "ring", check, load); err == nil || errors.As(err, &refusal) || got != nil {
		t.Fatalf("from a peer without a trusted write key: %v, loaded %q", err, got)
	}
}

// A request whose writing fails returns the error and leaves no goroutine
// behind to reset a stream it no longer has (it once reset nil: a crash).
func TestRequestThatFailsToWrite(t *testing.T) {
	hs := connectedHosts(t, 2)
	hs[1].SetStreamHandler(Status.ID, func(s network.Stream) { io.Copy(io.Discard, s); s.Close() })
	boom := errors.New("boom")
	for range 50 {
		s, done, err := request(context.Background(), hs[0], hs[1].ID(), Status, func(io.Writer) error { return boom })
		if !errors.Is(err, boom) || s != nil || done != nil {
			t.Fatalf("request: %v, %v, %v; want the write's error alone", s, done != nil, err)
		}
	}
}

// A slow reader cannot hold a snapshot slot: past snapshotGrace a stream
// under snapshotMinRate is cut off; and one peer gets one snapshot at a
// time, so it cannot take both slots. A follower's hint names at most
// maxHints writers. Before, two slow readers held both slots for as long
// as they read a byte every five minutes.
func TestSnapshotSlowReaderIsCutOff(t *testing.T) {
	defer func(g time.Duration, r int64) { snapshotGrace, snapshotMinRate = g, r }(snapshotGrace, snapshotMinRate)
	snapshotGrace, snapshotMinRate = 300*time.Millisecond, 4<<20
	hs := realHosts(t, 3)
	writer, slow, follower := hs[0], hs[1], hs[2]
	writers := map[peer.ID]bool{writer.ID(): true}
	ctx := context.Background()
	served := make(chan error, 4)
	ServeSnapshot(ctx, writer, SnapshotServer{Cluster: "ring", Writer: proof{writer.ID(), writers},
		Writers: func() []string { return nil },
		Write: func(_ context.Context, w io.Writer) error {
			chunk := make([]byte, 64<<10)
			for range 4096 { // 256 MiB, if anyone read it
				if _, err := w.Write(chunk); err != nil {
					served <- err
					return err
				}
			}
			served <- nil
			return nil
		}})
	many := make([]string, 100)
	for i := range many {
		many[i] = "/ip4/127.0.0.1/tcp/1/p2p/" + writer.ID().String()
	}
	ServeSnapshot(ctx, follower, SnapshotServer{Cluster: "ring", Writers: func() []string { return many }})

	readSlowly := func(r io.Reader, _ *atomic.Int64) error {
		b := make([]byte, 4<<10)
		for {
			if _, err := r.Read(b); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond) // ~200 KiB/s
		}
	}
	first := make(chan error, 1)
	go func() { first <- AskSnapshot(ctx, slow, writer.ID(), "ring", proof{slow.ID(), writers}, readSlowly) }()
	time.Sleep(100 * time.Millisecond)
	// The same peer's second request, while the first runs: busy.
	err := AskSnapshot(ctx, slow, writer.ID(), "ring", proof{slow.ID(), writers}, readSlowly)
	var refusal *SnapshotRefusal
	if !errors.As(err, &refusal) || !strings.Contains(refusal.Reason, "busy") {
		t.Fatalf("a second snapshot for the same peer: %v, want busy", err)
	}
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "bytes a second") {
			t.Fatalf("the slow snapshot ended with %v, want cut off for its rate", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a slow reader still holds its snapshot slot")
	}
	if err := <-first; err == nil {
		t.Fatal("the slow reader's snapshot did not fail")
	}
	if err := slow.Connect(ctx, peer.AddrInfo{ID: follower.ID(), Addrs: follower.Addrs()}); err != nil {
		t.Fatal(err)
	}
	err = AskSnapshot(ctx, slow, follower.ID(), "ring", proof{slow.ID(), writers}, readSlowly)
	if !errors.As(err, &refusal) || len(refusal.Writers) != maxHints {
		t.Fatalf("a follower naming 100 writers: %v, %d taken; want %d", err, len(refusal.Writers), maxHints)
	}
}
