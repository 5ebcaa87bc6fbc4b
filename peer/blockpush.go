package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/adder"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/p2p"
)

// p2p.BlockPush carries the blocks of an add to the peers it is
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

// serveBlockPush stores pushed blocks in this peer's kubo.
func (p *Peer) serveBlockPush(s network.Stream) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	// The stream opens with the pusher's write key and its endorsement of
	// the pusher's peer ID, so that a peer that joined a moment ago (and
	// has not heard the pusher's announcement yet) can check it at once.
	s.SetReadDeadline(time.Now().Add(p2p.BlockPush.Idle))
	if err := p.readWriterProof(r, from); err != nil {
		s.Reset()
		return
	}
	for {
		s.SetReadDeadline(time.Now().Add(p2p.BlockPush.Idle))
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
		for range n {
			b, err := frame.Read(r, uint64(p2p.BlockPush.MaxRequest))
			if err != nil {
				s.Reset()
				return
			}
			blocks = append(blocks, b)
		}
		ctx, cancel := context.WithTimeout(p.lifetime, 5*time.Minute)
		err = p.ipfs.BlockPutMany(ctx, blocks, string(codec), string(hash))
		cancel()
		s.SetWriteDeadline(time.Now().Add(p2p.BlockPush.Idle))
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
	p   *Peer
	to  peer.ID
	s   network.Stream
	r   *bufio.Reader
	w   *bufio.Writer
	err error // the first failure: the peer then fetches over bitswap
}

func (x *pusher) BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error {
	if x.err != nil {
		return nil
	}
	if x.s == nil {
		s, err := x.p.node.Host.NewStream(ctx, x.to, p2p.BlockPush.ID)
		if err != nil {
			x.fail(err)
			return nil
		}
		x.s, x.r, x.w = s, bufio.NewReader(s), bufio.NewWriterSize(s, 256<<10)
		// Write errors show when the first batch is flushed.
		_ = x.p.writeWriterProof(x.w)
	}
	x.s.SetDeadline(time.Now().Add(p2p.BlockPush.Idle))
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

// writeWriterProof opens a stream that only writers may use: this peer's
// write key, then that key's endorsement of this peer's ID.
func (p *Peer) writeWriterProof(w io.Writer) error {
	if err := frame.Write(w, []byte(p.writeKey.Public().String())); err != nil {
		return err
	}
	return frame.Write(w, p.writeKey.Endorse(p.cfg.Cluster.Name, p.host.ID().String()))
}

// readWriterProof reads what writeWriterProof wrote and checks that it
// proves that from (the stream's authenticated remote peer) holds a
// trusted write key.
func (p *Peer) readWriterProof(r *bufio.Reader, from peer.ID) error {
	key, err1 := frame.Read(r, 128)
	proof, err2 := frame.Read(r, 128)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if !p.checkEndorsement(api.ID{ID: from, WriteKey: string(key), WriteKeyProof: proof}) {
		return fmt.Errorf("it did not prove that it holds a write key of cluster %q", p.cfg.Cluster.Name)
	}
	return nil
}

// fanout stores blocks in this peer's kubo (which must succeed) and pushes
// them to other peers (best effort).
type fanout struct {
	local  adder.BlockSink
	remote []*pusher
}

func (f *fanout) BlockPutMany(ctx context.Context, blocks [][]byte, codec, mhType string) error {
	if err := f.local.BlockPutMany(ctx, blocks, codec, mhType); err != nil {
		return err
	}
	for _, r := range f.remote {
		r.BlockPutMany(ctx, blocks, codec, mhType)
	}
	return nil
}

// Close ends the pushes.
func (f *fanout) Close() {
	for _, r := range f.remote {
		r.close()
	}
}

// sinkFor stores in this peer's kubo and pushes to the peers in to.
func (p *Peer) sinkFor(to []peer.ID) *fanout {
	f := &fanout{local: p.ipfs}
	for _, pid := range to {
		if pid != p.host.ID() {
			f.remote = append(f.remote, &pusher{p: p, to: pid})
		}
	}
	return f
}
