package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/internal/frame"
)

// BlockSink stores blocks that share a codec and a hash function (kubo's
// block/put; adder.BlockSink).
type BlockSink interface {
	BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error
}

// WriterProof opens the streams only writers may use: Write sends this
// peer's proof (its write key and that key's signature over its peer ID),
// Check reads one and says whether it proves that from holds a write key
// of this cluster.
type WriterProof interface {
	Write(w io.Writer) error
	Check(r *bufio.Reader, from peer.ID) error
	// Known says whether pid proved already, elsewhere (the peers
	// topic), that it is a writer: its streams get slots of their own
	// (Protocol.PerPeer). Its proof is checked all the same.
	Known(pid peer.ID) bool
}

// BlockPush carries the blocks of an add to the peers it is
// allocated to, which store them in their kubo (block/put), so the content
// is where it is pinned when the add returns — not only in the adding
// peer's kubo. Only proven writers may push (anyone else could fill a
// volunteer's disk).
//
// The stream opens with two frames, the pusher's write key and that key's
// signature over its peer ID; then frames, each answered with one byte (0
// ok, 1 followed by an error):
// [uvarint len][codec][uvarint len][hash function][uvarint n] n × [uvarint len][block].
const maxPushBatch = 4096

// maxPushBatchBytes bounds the bytes of one batch, held in memory until
// kubo stores it (an adder sends about 4 MiB).
const maxPushBatchBytes = 32 << 20

// ServeBlockPush stores the blocks writers push to h in store (this peer's
// kubo), each batch within timeout.
func ServeBlockPush(ctx context.Context, h host.Host, proof WriterProof, store BlockSink, timeout time.Duration) {
	Serve(h, BlockPush, proof.Known, func(s network.Stream) { serveBlockPush(ctx, s, proof, store, timeout) }, nil)
}

func serveBlockPush(lifetime context.Context, s network.Stream, proof WriterProof, store BlockSink, timeout time.Duration) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	// The stream opens with the pusher's write key and its endorsement of
	// the pusher's peer ID, so that a peer that joined a moment ago (and
	// has not heard the pusher's announcement yet) can check it at once.
	s.SetReadDeadline(time.Now().Add(BlockPush.Idle))
	if err := proof.Check(r, from); err != nil {
		s.Reset()
		return
	}
	for {
		s.SetReadDeadline(time.Now().Add(BlockPush.Idle))
		codec, err := frame.Read(r, 64)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.Reset()
			return
		}
		hash, err := frame.Read(r, 64)
		if err != nil {
			s.Reset()
			return
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > maxPushBatch {
			s.Reset()
			return
		}
		blocks := make([][]byte, 0, n)
		size := 0
		for range n {
			b, err := frame.Read(r, uint64(BlockPush.MaxRequest))
			size += len(b)
			if err != nil || size > maxPushBatchBytes {
				s.Reset()
				return
			}
			blocks = append(blocks, b)
		}
		ctx, cancel := context.WithTimeout(lifetime, timeout)
		err = store.BlockPutMany(ctx, blocks, string(codec), string(hash))
		cancel()
		s.SetWriteDeadline(time.Now().Add(BlockPush.Idle))
		if err != nil {
			s.Write([]byte{1})
			frame.Write(s, []byte(err.Error()))
			continue
		}
		if _, err := s.Write([]byte{0}); err != nil {
			return
		}
	}
}

// pusher sends blocks to one peer; it is an adder.BlockSink.
type pusher struct {
	h     host.Host
	proof WriterProof
	to    peer.ID
	s     network.Stream
	r     *bufio.Reader
	w     *bufio.Writer
	err   error // the first failure: the peer then fetches over bitswap
}

func (x *pusher) BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error {
	if x.err != nil {
		return nil
	}
	if x.s == nil {
		s, err := x.h.NewStream(ctx, x.to, BlockPush.ID)
		if err != nil {
			x.fail(err)
			return nil
		}
		x.s, x.r, x.w = s, bufio.NewReader(s), bufio.NewWriterSize(s, 256<<10)
		// Write errors show when the first batch is flushed.
		_ = x.proof.Write(x.w)
	}
	x.s.SetDeadline(time.Now().Add(BlockPush.Idle))
	err := frame.Write(x.w, []byte(codec))
	if err == nil {
		err = frame.Write(x.w, []byte(mhType))
	}
	if err == nil {
		err = frame.WriteUvarint(x.w, uint64(len(blocks)))
	}
	for _, b := range blocks {
		if err == nil {
			err = frame.Write(x.w, b)
		}
	}
	if err == nil {
		err = x.w.Flush()
	}
	var ack byte
	if err == nil {
		ack, err = x.r.ReadByte()
	}
	if err == nil && ack != 0 {
		msg, _ := frame.Read(x.r, 4096)
		err = fmt.Errorf("%s", msg)
	}
	if err != nil {
		x.fail(err)
	}
	return nil
}

func (x *pusher) fail(err error) {
	x.err = err
	logger.Warnf("pushing blocks to %s: %s (it will fetch them over bitswap)", x.to, err)
	if x.s != nil {
		x.s.Reset()
	}
}

func (x *pusher) close() {
	if x.s != nil && x.err == nil {
		x.s.Close()
	}
}

// Fanout stores blocks in this peer's kubo (which must succeed) and pushes
// them to other peers (best effort: a peer whose push fails fetches the
// blocks over bitswap when it pins).
type Fanout struct {
	local  BlockSink
	remote []*pusher
}

// NewFanout stores in local and pushes to the peers in to (all but self),
// over h, opening each stream with proof.
func NewFanout(h host.Host, proof WriterProof, local BlockSink, to []peer.ID) *Fanout {
	f := &Fanout{local: local}
	for _, pid := range to {
		if pid != h.ID() {
			f.remote = append(f.remote, &pusher{h: h, proof: proof, to: pid})
		}
	}
	return f
}

func (f *Fanout) BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error {
	if err := f.local.BlockPutMany(ctx, blocks, codec, mhType); err != nil {
		return err
	}
	for _, r := range f.remote {
		r.BlockPutMany(ctx, blocks, codec, mhType)
	}
	return nil
}

// Close ends the pushes.
func (f *Fanout) Close() {
	for _, r := range f.remote {
		r.close()
	}
}
