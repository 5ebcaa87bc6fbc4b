package p2p

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/frame"
	"github.com/pinring/pinring/trust"
)

// KeyProof is the WriterProof of a cluster peer: it proves itself with
// its write key and that key's endorsement of its peer ID, and checks what
// others send against the cluster's write keys.
type KeyProof struct {
	// Key is this peer's write key; nil on a read-only peer, which cannot
	// open writers' streams.
	Key     *trust.WriteKey
	Cluster string
	Self    peer.ID
	// Endorsed checks a peer's key and endorsement against the cluster's
	// write keys (membership.Ring.Endorsed).
	Endorsed func(api.ID) bool
	// Writer reports whether a peer already proved it is a writer on the
	// peers topic.
	Writer func(peer.ID) bool
}

var _ WriterProof = KeyProof{}

// Write sends this peer's write key, then that key's endorsement of this
// peer's ID.
func (k KeyProof) Write(w io.Writer) error {
	if k.Key == nil {
		return errors.New("this peer holds no write key")
	}
	if err := frame.Write(w, []byte(k.Key.Public().String())); err != nil {
		return err
	}
	return frame.Write(w, k.Key.Endorse(k.Cluster, k.Self.String()))
}

// Check reads what Write wrote and checks that it proves that from (the
// stream's authenticated remote peer) holds a trusted write key.
func (k KeyProof) Check(r *bufio.Reader, from peer.ID) error {
	key, err1 := frame.Read(r, 128)
	proof, err2 := frame.Read(r, 128)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if !k.Endorsed(api.ID{ID: from, WriteKey: string(key), WriteKeyProof: proof}) {
		return fmt.Errorf("it did not prove that it holds a write key of cluster %q", k.Cluster)
	}
	return nil
}

// Known implements WriterProof.
func (k KeyProof) Known(pid peer.ID) bool { return k.Writer(pid) }
