package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// RepoGC asks a cluster peer to run its kubo's garbage collection. The
// asking peer opens with its WriterProof (only writers may make other
// peers' kubos drop blocks); the answer is the api.RepoGC as one JSON
// document.

// ServeRepoGC answers RepoGC requests on h: a proven writer's gets what gc
// returns (within RepoGC.Deadline of ctx), anyone else's what refused
// says.
func ServeRepoGC(ctx context.Context, h host.Host, proof WriterProof, gc func(context.Context) api.RepoGC, refused func(reason string) api.RepoGC) {
	// One collection at a time; the stream slots are for reading proofs,
	// so a stranger that never sends one holds no writer back.
	var running sync.Mutex
	Serve(h, RepoGC, proof.Known, func(s network.Stream) {
		defer s.Close()
		from := s.Conn().RemotePeer()
		s.SetReadDeadline(time.Now().Add(RepoGC.Idle))
		var r api.RepoGC
		if err := proof.Check(bufio.NewReader(s), from); err != nil {
			r = refused(fmt.Sprintf("refused: only writers may ask for a garbage collection, and %s %s", from, err))
		} else if !running.TryLock() {
			r = refused("busy: a garbage collection is already running on this peer")
		} else {
			logger.Infof("kubo garbage collection asked by %s", from)
			gctx, cancel := context.WithTimeout(ctx, RepoGC.Deadline)
			r = gc(gctx)
			cancel()
			running.Unlock()
		}
		s.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := json.NewEncoder(s).Encode(r); err != nil {
			s.Reset()
		}
	}, nil)
}

// AskRepoGC asks pid, already connected, to collect its kubo's garbage,
// proving with proof, and returns its answer.
func AskRepoGC(ctx context.Context, h host.Host, proof WriterProof, pid peer.ID) (api.RepoGC, error) {
	s, done, err := request(ctx, h, pid, RepoGC, proof.Write)
	if err != nil {
		return api.RepoGC{}, err
	}
	defer done()
	defer s.Close()
	var r api.RepoGC
	if err := json.NewDecoder(io.LimitReader(s, 1<<30)).Decode(&r); err != nil {
		return api.RepoGC{}, fmt.Errorf("its answer: %w", err)
	}
	if r.Peer != pid {
		return api.RepoGC{}, fmt.Errorf("peer %s answered for %s", pid, r.Peer)
	}
	return r, nil
}

// GatherRepoGC runs local (this peer's collection) and asks each of others
// to collect its kubo's garbage, all at once; a peer that cannot be
// reached or refuses says so in its entry, named by peername.
func GatherRepoGC(ctx context.Context, h host.Host, proof WriterProof, others []peer.ID, peername func(peer.ID) string, local func(context.Context) api.RepoGC) api.GlobalRepoGC {
	g := api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{}}
	var mu sync.Mutex
	put := func(r api.RepoGC) {
		mu.Lock()
		defer mu.Unlock()
		g.PeerMap[r.Peer.String()] = r
	}
	var wg sync.WaitGroup
	for _, pid := range others {
		wg.Go(func() {
			r, err := AskRepoGC(ctx, h, proof, pid)
			if err != nil {
				r = api.RepoGC{Peer: pid, Peername: peername(pid), Error: err.Error()}
			}
			put(r)
		})
	}
	put(local(ctx))
	wg.Wait()
	return g
}
