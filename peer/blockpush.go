package peer

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/p2p"
)

// writerProof is this peer's p2p.WriterProof.
type writerProof struct{ p *Peer }

var _ p2p.WriterProof = writerProof{}

func (w writerProof) Write(out io.Writer) error { return w.p.writeWriterProof(out) }
func (w writerProof) Known(pid peer.ID) bool    { return w.p.isWriter(pid) }
func (w writerProof) Check(r *bufio.Reader, from peer.ID) error {
	return w.p.readWriterProof(r, from)
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
	if !p.ring.Endorsed(api.ID{ID: from, WriteKey: string(key), WriteKeyProof: proof}) {
		return fmt.Errorf("it did not prove that it holds a write key of cluster %q", p.cfg.Cluster.Name)
	}
	return nil
}

// sinkFor stores in this peer's kubo and pushes to the peers in to.
func (p *Peer) sinkFor(to []peer.ID) *p2p.Fanout {
	return p2p.NewFanout(p.node.Host, writerProof{p}, p.ipfs, to)
}
