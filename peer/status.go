package peer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/status"
)

// p2p.Status asks a cluster peer for its local status: of one CID, or of
// every pin it knows. The request is one JSON object; the answer is
// PinInfo objects, one JSON document each, ending at EOF. Streams of all
// pins come in CID key order (then any CIDs with an unpin outstanding).
const statusOne = 5 * time.Second // bound on one peer's status of one CID

type statusRequest struct {
	Cid string `json:"cid,omitempty"` // one CID; empty: every pin
}

func (p *Peer) serveStatus(s network.Stream) {
	defer s.Close()
	var req statusRequest
	if err := json.NewDecoder(io.LimitReader(s, p2p.Status.MaxRequest)).Decode(&req); err != nil {
		s.Reset()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := bufio.NewWriterSize(s, 32<<10)
	enc := json.NewEncoder(w)
	send := func(pi api.PinInfo) error {
		s.SetWriteDeadline(time.Now().Add(p2p.Status.Idle))
		return enc.Encode(p.withIdentity(pi))
	}
	var err error
	if req.Cid != "" {
		var c api.Cid
		if c, err = api.ParseCid(req.Cid); err == nil {
			err = send(p.tracker.Status(ctx, c))
		}
	} else {
		err = p.tracker.StatusAll(ctx, nil, send)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		s.Reset()
	}
}

// withIdentity fills in this peer's name and kubo identity.
func (p *Peer) withIdentity(pi api.PinInfo) api.PinInfo {
	id := p.ipfsIDCached()
	pi.PeerName = p.cfg.Cluster.Peername
	pi.IPFS = id.ID
	pi.IPFSAddresses = id.Addresses
	return pi
}

// otherPeers are the cluster peers to ask for their status: every peer
// heard from, except this one.
func (p *Peer) otherPeers() []peer.ID {
	return slices.DeleteFunc(p.peers.IDs(), func(id peer.ID) bool { return id == p.host.ID() })
}

// askStatus opens a status stream to pid and calls fn with each answer.
func (p *Peer) askStatus(ctx context.Context, pid peer.ID, req statusRequest, fn func(api.PinInfo) error) error {
	ctx, cancel := context.WithTimeout(ctx, p2p.Status.Deadline)
	defer cancel()
	s, err := p.node.Host.NewStream(network.WithNoDial(ctx, "status"), pid, p2p.Status.ID)
	if err != nil {
		return err
	}
	defer s.Close()
	go func() {
		<-ctx.Done()
		s.Reset()
	}()
	s.SetWriteDeadline(time.Now().Add(p2p.Status.Idle))
	if err := json.NewEncoder(s).Encode(req); err != nil {
		s.Reset()
		return err
	}
	s.CloseWrite()
	dec := json.NewDecoder(bufio.NewReaderSize(s, 32<<10))
	for {
		s.SetReadDeadline(time.Now().Add(p2p.Status.Idle))
		var pi api.PinInfo
		if err := dec.Decode(&pi); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if pi.Peer != pid {
			return fmt.Errorf("peer %s answered for %s", pid, pi.Peer)
		}
		if err := fn(pi); err != nil {
			return err
		}
	}
}

// unreachable is what the status of an allocated peer that did not answer
// looks like.
func unreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	return api.PinInfo{Cid: c, Peer: pid, PinInfoShort: api.PinInfoShort{
		Status: api.StatusClusterError, Error: "peer unreachable: " + err.Error(), TS: time.Now().UTC()}}
}

// globalStatus asks every cluster peer for c's status and merges the
// answers.
func (p *Peer) globalStatus(ctx context.Context, c api.Cid) api.GlobalPinInfo {
	g := p.global(p.tracker.Status(ctx, c))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pid := range p.otherPeers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One answer is small: a peer that has not given it in a few
			// seconds (a link that died without a word) is unreachable.
			sctx, cancel := context.WithTimeout(ctx, statusOne)
			defer cancel()
			var got *api.PinInfo
			err := p.askStatus(sctx, pid, statusRequest{Cid: c.String()}, func(pi api.PinInfo) error { got = &pi; return nil })
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got != nil:
				g.Add(*got)
			case err != nil:
				g.Add(p.namedUnreachable(c, pid, err))
			}
		}()
	}
	wg.Wait()
	return g
}

func (p *Peer) namedUnreachable(c api.Cid, pid peer.ID, err error) api.PinInfo {
	pi := unreachable(c, pid, err)
	pi.PeerName = p.peernameOf(pid)
	return pi
}

// globalStatusAll merges every peer's status stream (this peer's first)
// into one GlobalPinInfo per CID (status.Merge).
func (p *Peer) globalStatusAll(ctx context.Context, filter api.StatusFilter, fn func(api.GlobalPinInfo) error) error {
	sources := []status.Source{{Peer: p.host.ID(), Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
		return p.tracker.StatusAll(ctx, nil, func(pi api.PinInfo) error { return fn(p.withIdentity(pi)) })
	}}}
	for _, pid := range p.otherPeers() {
		sources = append(sources, status.Source{Peer: pid, Run: func(ctx context.Context, fn func(api.PinInfo) error) error {
			return p.askStatus(ctx, pid, statusRequest{}, fn)
		}})
	}
	return status.Merge(ctx, sources, filter, p.namedUnreachable, fn)
}
