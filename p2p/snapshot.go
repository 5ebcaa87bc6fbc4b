package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/internal/countio"
	"github.com/pinring/pinring/internal/frame"
)

// Snapshot gives a peer that starts with an empty pinset a snapshot of the
// state (ADR 5): it loads it with blind writes, then syncs only the deltas
// newer than it, instead of merging the whole history.
//
// The asking peer sends one frame, the cluster name. The answer is one
// frame with a reason for refusing ("" to go on) — from a follower, then a
// frame with the writers it is connected to (JSON multiaddrs); then the
// server's WriterProof (only writers serve snapshots: a writer could have
// written anything in it anyway, and the libp2p connection proves the peer
// ID); then the snapshot stream. Its Idle is generous: the server reads
// every delta block (to check the DAG is consistent) before it sends the
// first byte of data.

// idleStream refreshes the stream's deadline before every read and write,
// so a long transfer may take as long as it needs but a stalled one ends.
type idleStream struct{ network.Stream }

func (s idleStream) Read(b []byte) (int, error) {
	s.SetReadDeadline(time.Now().Add(Snapshot.Idle))
	return s.Stream.Read(b)
}

func (s idleStream) Write(b []byte) (int, error) {
	s.SetWriteDeadline(time.Now().Add(Snapshot.Idle))
	return s.Stream.Write(b)
}

// SnapshotServer is what a peer serves snapshots from.
type SnapshotServer struct {
	Cluster string
	// Writer is this peer's proof, nil for a follower (which refuses, and
	// names the writers it is connected to: Writers).
	Writer  WriterProof
	Writers func() []string
	// Write writes the snapshot stream.
	Write func(ctx context.Context, w io.Writer) error
}

// ServeSnapshot answers Snapshot requests on h from srv; beyond
// Snapshot.Concurrent at once, a request is told the peer is busy.
//
// A peer is served one snapshot at a time, and a snapshot that goes slower
// than snapshotMinRate once snapshotGrace has passed is cut off, so that
// slow readers cannot hold the slots.
func ServeSnapshot(ctx context.Context, h host.Host, srv SnapshotServer) {
	var mu sync.Mutex
	serving := map[peer.ID]bool{}
	grace, rate := snapshotGrace, snapshotMinRate
	Serve(h, Snapshot, nil, func(s network.Stream) {
		from := s.Conn().RemotePeer()
		mu.Lock()
		again := serving[from]
		serving[from] = true
		mu.Unlock()
		if again {
			snapshotBusy(s)
			return
		}
		defer func() { mu.Lock(); delete(serving, from); mu.Unlock() }()
		serveSnapshot(ctx, s, srv, grace, rate)
	}, snapshotBusy)
}

// snapshotGrace and snapshotMinRate: a snapshot stream must average at
// least snapshotMinRate bytes a second once snapshotGrace has passed (a
// home link's upload is ~128 KiB/s).
var (
	snapshotGrace   = 2 * time.Minute
	snapshotMinRate = int64(64 << 10)
)

// maxHints bounds the writers' addresses a follower names (and a new peer
// dials) when it refuses a snapshot.
const maxHints = 8

// rateGuard fails a write once the stream has averaged less than min
// bytes a second for longer than grace.
type rateGuard struct {
	w     io.Writer
	start time.Time
	grace time.Duration
	min   int64
	n     int64
}

func (g *rateGuard) Write(b []byte) (int, error) {
	if el := time.Since(g.start); el > g.grace && float64(g.n) < float64(g.min)*el.Seconds() {
		return 0, fmt.Errorf("the reader takes %d bytes in %s, under %d bytes a second", g.n, el.Round(time.Second), g.min)
	}
	n, err := g.w.Write(b)
	g.n += int64(n)
	return n, err
}

func snapshotBusy(s network.Stream) {
	defer s.Close()
	if _, err := frame.Read(bufio.NewReader(s), uint64(Snapshot.MaxRequest)); err != nil {
		s.Reset()
		return
	}
	frame.Write(s, []byte("this peer is busy serving other snapshots"))
}

func serveSnapshot(ctx context.Context, s network.Stream, srv SnapshotServer, grace time.Duration, minRate int64) {
	defer s.Close()
	st := idleStream{s}
	cluster, err := frame.Read(bufio.NewReader(st), uint64(Snapshot.MaxRequest))
	if err != nil {
		s.Reset()
		return
	}
	refuse := func(reason string) { frame.Write(st, []byte(reason)) }
	switch {
	case string(cluster) != srv.Cluster:
		refuse(fmt.Sprintf("this peer is in cluster %q, not %q", srv.Cluster, cluster))
		return
	case srv.Writer == nil:
		refuse("this peer holds no write key: ask a writer")
		// Then where the writers it is connected to are, so that a new
		// peer that knows only followers finds one, or, told there is
		// none, stops waiting and syncs through the DAG.
		writers := srv.Writers()
		hint, _ := json.Marshal(writers[:min(len(writers), maxHints)])
		frame.Write(st, hint)
		return
	}
	frame.Write(st, nil)
	srv.Writer.Write(st)
	if err := srv.Write(ctx, &rateGuard{w: st, start: time.Now(), grace: grace, min: minRate}); err != nil {
		logger.Warnf("snapshot for %s: %s", s.Conn().RemotePeer(), err)
		s.Reset()
	}
}

// SnapshotRefusal is a peer's answer that it gives no snapshot: the
// reason, and, from a follower, the writers it is connected to (Follower
// is false for a peer that did not say).
type SnapshotRefusal struct {
	Reason   string
	Follower bool
	Writers  []ma.Multiaddr
}

func (r *SnapshotRefusal) Error() string { return r.Reason }

// AskSnapshot asks pid over h for a snapshot of cluster's pinset, checks
// that pid proves a write key (proof.Check), and hands the stream to load
// with the count of bytes received so far. A refusal is a
// *SnapshotRefusal.
func AskSnapshot(ctx context.Context, h host.Host, pid peer.ID, cluster string, proof WriterProof, load func(r io.Reader, received *atomic.Int64) error) error {
	s, err := h.NewStream(ctx, pid, Snapshot.ID)
	if err != nil {
		return err
	}
	defer s.Close()
	st := idleStream{s}
	if err := frame.Write(st, []byte(cluster)); err != nil {
		s.Reset()
		return err
	}
	s.CloseWrite()
	counter := &countio.Reader{R: st}
	r := bufio.NewReaderSize(counter, 256<<10)
	reason, err := frame.Read(r, 1024)
	if err != nil {
		s.Reset()
		return err
	}
	if len(reason) > 0 {
		refusal := &SnapshotRefusal{Reason: string(reason)}
		if hint, err := frame.Read(r, 64<<10); err == nil {
			var addrs []string
			if json.Unmarshal(hint, &addrs) == nil {
				refusal.Follower = true
				for _, a := range addrs {
					if len(refusal.Writers) == maxHints {
						break // a follower names a few, not a list to dial for it
					}
					if m, err := ma.NewMultiaddr(a); err == nil {
						refusal.Writers = append(refusal.Writers, m)
					}
				}
			}
		}
		return refusal
	}
	if err := proof.Check(r, pid); err != nil {
		s.Reset()
		return err
	}
	if err := load(r, &counter.Count); err != nil {
		s.Reset()
		return err
	}
	return nil
}

// SnapshotFetch is how a new peer, whose pinset is empty, gets a snapshot:
// it asks every connected peer in turn, for up to Wait. A follower that
// refuses names the writers it is connected to, which are dialled once.
type SnapshotFetch struct {
	Cluster string
	Proof   WriterProof // this peer's, if it is a writer
	Wait    time.Duration
	// Quiet is how long, while every peer asked is a follower connected to
	// no writer, no new peer may turn up before asking stops.
	Quiet time.Duration
	// Load reads the snapshot pid sends (received counts its bytes).
	Load func(ctx context.Context, pid peer.ID, r io.Reader, received *atomic.Int64) error
	// Asking is called whenever asking (re)starts: for a status line.
	Asking func()
}

// Run asks until a snapshot is loaded (it returns from whom), the time is
// up, or only followers without writers are in reach.
func (f SnapshotFetch) Run(ctx context.Context, h host.Host) (peer.ID, bool) {
	began := time.Now()
	tried := map[peer.ID]bool{}
	f.Asking()
	// noWriter stays true while every peer asked is a follower connected
	// to no writer.
	noWriter, lastNew := true, time.Now()
	for time.Since(began) < f.Wait && ctx.Err() == nil {
		for _, pid := range h.Network().Peers() {
			if tried[pid] {
				continue
			}
			tried[pid] = true
			lastNew = time.Now()
			sctx, cancel := context.WithCancel(ctx)
			err := AskSnapshot(sctx, h, pid, f.Cluster, f.Proof, func(r io.Reader, received *atomic.Int64) error {
				return f.Load(sctx, pid, r, received)
			})
			cancel()
			if err == nil {
				return pid, true
			}
			logger.Infof("no snapshot from %s: %s", pid, err)
			var refusal *SnapshotRefusal
			if errors.As(err, &refusal) && refusal.Follower {
				if len(refusal.Writers) > 0 {
					noWriter = false
					logger.Infof("%s is connected to writers: asking them", pid)
					dialOnce(ctx, h, refusal.Writers)
				}
			} else {
				noWriter = false
			}
			f.Asking()
		}
		if noWriter && len(tried) > 0 && time.Since(lastNew) >= f.Quiet {
			logger.Infof("every peer reached (%d) holds no write key and is connected to no writer: syncing the pinset through the DAG", len(tried))
			return "", false
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	logger.Infof("no peer gave a snapshot within %s: syncing the pinset through the DAG", f.Wait)
	return "", false
}

// dialOnce connects to the peers at addrs, once each and briefly: they are
// what another peer said, not addresses this peer keeps trying (a writer
// among them is kept once its own announcement arrives).
func dialOnce(ctx context.Context, h host.Host, addrs []ma.Multiaddr) {
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		logger.Infof("writers named by a follower: %s", err)
		return
	}
	for _, ai := range infos {
		if ai.ID == h.ID() {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := h.Connect(dctx, ai); err != nil {
			logger.Infof("writer %s named by a follower: %s", ai.ID, err)
		}
		cancel()
	}
}
