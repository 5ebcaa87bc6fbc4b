package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multistream"

	"github.com/pinring/pinring/api"
)

// The peers protocol: a peer joining a ring asks a writer it is connected
// to for the peers that writer is connected to, instead of the ring
// answering its join on the peers topic (each answer there reaches every
// peer). The request is empty; the answer opens with the writer's proof
// (WriterProof.Write), then api.ID objects, one JSON document each, ending
// at EOF.

// MaxPeers bounds the peers one answer may hold (the asker stops reading
// beyond): membership.DefaultMax. maxPeersAnswer bounds its bytes.
const (
	MaxPeers       = 4096
	maxPeersAnswer = 32 << 20
	maxPeerEntry   = 256 << 10 // membership.MaxAnnouncement
)

// peersEvery is how often one caller gets an answer; sooner, its stream is
// reset. An answer is made at most once per peersEvery and reused.
const peersEvery = 10 * time.Second

// ServePeers answers Peers requests on h with what known returns (the
// peers this writer is connected to, trimmed for relaying), proving first
// with proof that this peer is a writer. Only writers serve it.
func ServePeers(h host.Host, proof WriterProof, known func() []api.ID) {
	pr := Peers
	var mu sync.Mutex
	var cached []byte
	var madeAt time.Time
	last := map[peer.ID]time.Time{}
	answer := func(from peer.ID) ([]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if at, ok := last[from]; ok && now.Sub(at) < peersEvery {
			return nil, false
		}
		if len(last) >= 4*MaxPeers { // bounded: forget the callers of long ago
			for pid, at := range last {
				if now.Sub(at) >= peersEvery {
					delete(last, pid)
				}
			}
		}
		last[from] = now
		if cached == nil || now.Sub(madeAt) >= peersEvery {
			var b []byte
			ids := known()
			for _, id := range ids[:min(len(ids), MaxPeers)] {
				j, err := json.Marshal(id)
				if err != nil {
					continue
				}
				b = append(append(b, j...), '\n')
			}
			cached, madeAt = b, now
		}
		return cached, true
	}
	Serve(h, pr, proof.Known, func(s network.Stream) {
		defer s.Close()
		body, ok := answer(s.Conn().RemotePeer())
		if !ok {
			s.Reset()
			return
		}
		w := bufio.NewWriterSize(s, 32<<10)
		s.SetWriteDeadline(time.Now().Add(pr.Idle))
		if proof.Write(w) != nil {
			s.Reset()
			return
		}
		for len(body) > 0 {
			n := min(len(body), 64<<10)
			s.SetWriteDeadline(time.Now().Add(pr.Idle))
			if _, err := w.Write(body[:n]); err != nil {
				s.Reset()
				return
			}
			body = body[n:]
		}
		if err := w.Flush(); err != nil {
			s.Reset()
		}
	}, nil)
}

// ErrNotAWriter is AskPeers' error when pid did not prove it is a writer,
// or does not serve the protocol; any other error (a reset: its slots were
// full; a timeout) may not recur.
var ErrNotAWriter = errors.New("not a writer")

// AskPeers asks pid, already connected, over h for the peers it knows, as
// JSON documents (api.ID) the caller checks as it checks an announcement
// (membership.CheckRelayed). The answer counts only if pid proves, in its
// first bytes, that it is a writer (proof.Check); more than MaxPeers
// entries, or one of more than maxPeerEntry bytes, is an error.
func AskPeers(ctx context.Context, h host.Host, pid peer.ID, proof WriterProof) ([]json.RawMessage, error) {
	notServed := func(err error) error { // as ErrNotAWriter, or nil
		if !errors.Is(err, multistream.ErrNotSupported[protocol.ID]{}) {
			return nil
		}
		return fmt.Errorf("peer %s: %w: it does not serve %s", pid, ErrNotAWriter, Peers.ID)
	}
	s, done, err := request(ctx, h, pid, Peers, func(io.Writer) error { return nil })
	if err := notServed(err); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	defer done()
	defer s.Close()
	body := io.LimitReader(s, maxPeersAnswer)
	r := bufio.NewReader(body)
	s.SetReadDeadline(time.Now().Add(Peers.Idle))
	if _, err := r.Peek(1); err != nil {
		s.Reset()
		if err := notServed(err); err != nil { // negotiated lazily, on the first read
			return nil, err
		}
		// Busy (its slots full), gone or too slow: it may answer
		// another time.
		return nil, fmt.Errorf("peer %s: no answer: %w", pid, err)
	}
	if err := proof.Check(r, pid); err != nil {
		s.Reset()
		return nil, fmt.Errorf("peer %s: %w: %w", pid, ErrNotAWriter, err)
	}
	var out []json.RawMessage
	err = readEach(s, r, Peers.Idle, func(id json.RawMessage) error {
		if len(out) == MaxPeers {
			return fmt.Errorf("peer %s answered with more than %d peers", pid, MaxPeers)
		}
		if len(id) > maxPeerEntry {
			return fmt.Errorf("peer %s answered with a peer of %d bytes, at most %d", pid, len(id), maxPeerEntry)
		}
		out = append(out, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
