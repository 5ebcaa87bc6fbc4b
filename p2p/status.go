package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Status asks a cluster peer for its local status: of one CID, or of every
// pin it knows. The request is one JSON object; the answer is PinInfo
// objects, one JSON document each, ending at EOF. Streams of all pins come
// in CID key order (then any CIDs with an unpin outstanding).

type statusRequest struct {
	Cid string `json:"cid,omitempty"` // one CID; empty: every pin
}

// ServeStatus answers Status requests on h: one CID with one, every pin
// with all (which calls its fn in CID key order).
//
// A request of every pin costs a kubo pin listing and a walk of the
// pinset: at most maxStatusAll run at once, and more are reset at once
// (the asker shows that peer's status as an error); a request must arrive
// within Status.Idle.
func ServeStatus(h host.Host, one func(context.Context, api.Cid) api.PinInfo, all func(context.Context, func(api.PinInfo) error) error) {
	allSlots := make(chan struct{}, maxStatusAll)
	pr := Status
	Serve(h, pr, nil, func(s network.Stream) { serveStatus(s, pr.Idle, allSlots, one, all) }, nil)
}

// maxStatusAll is how many requests of every pin's status a peer serves
// at once.
const maxStatusAll = 4

func serveStatus(s network.Stream, idle time.Duration, allSlots chan struct{}, one func(context.Context, api.Cid) api.PinInfo, all func(context.Context, func(api.PinInfo) error) error) {
	defer s.Close()
	var req statusRequest
	s.SetReadDeadline(time.Now().Add(idle))
	if err := json.NewDecoder(io.LimitReader(s, Status.MaxRequest)).Decode(&req); err != nil {
		s.Reset()
		return
	}
	if req.Cid == "" {
		select {
		case allSlots <- struct{}{}:
			defer func() { <-allSlots }()
		default:
			s.Reset() // busy
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := bufio.NewWriterSize(s, 32<<10)
	enc := json.NewEncoder(w)
	send := func(pi api.PinInfo) error {
		s.SetWriteDeadline(time.Now().Add(idle))
		return enc.Encode(pi)
	}
	var err error
	if req.Cid != "" {
		var c api.Cid
		if c, err = api.ParseCid(req.Cid); err == nil {
			err = send(one(ctx, c))
		}
	} else {
		err = all(ctx, send)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		s.Reset()
	}
}

// AskStatus asks pid, already connected, over h for its status of c (an
// undefined c: of every pin) and calls fn with each answer, checking that
// each is pid's own.
func AskStatus(ctx context.Context, h host.Host, pid peer.ID, c api.Cid, fn func(api.PinInfo) error) error {
	req := statusRequest{}
	if c.Defined() {
		req.Cid = c.String()
	}
	s, done, err := request(ctx, h, pid, Status, func(w io.Writer) error { return json.NewEncoder(w).Encode(req) })
	if err != nil {
		return err
	}
	defer done()
	defer s.Close()
	return readEach(s, s, Status.Idle, func(pi api.PinInfo) error {
		if pi.Peer != pid {
			return fmt.Errorf("peer %s answered for %s", pid, pi.Peer)
		}
		return fn(pi)
	})
}

// readEach decodes the JSON documents r reads from s until EOF, each
// within idle of the one before, and calls fn with each.
func readEach[T any](s network.Stream, r io.Reader, idle time.Duration, fn func(T) error) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 32<<10))
	for {
		s.SetReadDeadline(time.Now().Add(idle))
		var v T
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}
