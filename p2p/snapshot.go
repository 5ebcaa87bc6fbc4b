package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
func ServeSnapshot(ctx context.Context, h host.Host, srv SnapshotServer) {
	Serve(h, Snapshot, func(s network.Stream) { serveSnapshot(ctx, s, srv) }, snapshotBusy)
}

func snapshotBusy(s network.Stream) {
	defer s.Close()
	if _, err := frame.Read(bufio.NewReader(s), uint64(Snapshot.MaxRequest)); err != nil {
		s.Reset()
		return
	}
	frame.Write(s, []byte("this peer is busy serving other snapshots"))
}

func serveSnapshot(ctx context.Context, s network.Stream, srv SnapshotServer) {
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
		hint, _ := json.Marshal(srv.Writers())
		frame.Write(st, hint)
		return
	}
	frame.Write(st, nil)
	srv.Writer.Write(st)
	if err := srv.Write(ctx, st); err != nil {
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
