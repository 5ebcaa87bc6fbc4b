// Package audit proves that a peer holds a pin's DAG: the auditor sends a
// challenge (the pin's root and a fresh nonce); the prover answers with the
// blocks on one path from the root down to a leaf, the path chosen by the
// nonce at every level, read from its own blockstore only; the auditor
// checks every block's hash, that each is the chosen link of the one
// before, and that the answer came within the deadline. The auditor needs
// no block of the DAG itself: only the root CID, which the whole ring
// knows (docs/adr/0008-audits.md).
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
)

// Bounds of one proof.
const (
	// MaxDepth is the longest path proved (UnixFS DAGs of any real size
	// are a few levels deep; a deeper one is proved down to here).
	MaxDepth = 64
	// MaxBlock is the largest block a proof may carry (kubo's limit for
	// a block it accepts is 2 MiB; the adder makes 1 MiB at most).
	MaxBlock = 2 << 20
	// NonceSize is the nonce's length.
	NonceSize = 16
)

// Challenge asks for a path of Root chosen by Nonce.
type Challenge struct {
	Root  cid.Cid
	Nonce [NonceSize]byte
}

// Errors a proof fails with (wrapped, with the details).
var (
	ErrTruncated = errors.New("the path stops before a leaf")
	ErrWrongHash = errors.New("a block does not hash to its CID")
	ErrWrongLink = errors.New("a block is not the link the nonce chose")
	ErrTooLong   = errors.New("the proof is longer than the path")
	ErrLate      = errors.New("the answer came after the deadline")
	ErrTooLarge  = errors.New("a block is larger than a proof may carry")
	// ErrNoAnswer: the prover could not be reached or said nothing in
	// time. It counts against the prover only if the prover was heard
	// from (a heartbeat) after the challenge was sent: alive and silent.
	ErrNoAnswer = errors.New("no answer")
	// ErrFetching: the prover lacks the blocks but is fetching the pin
	// (its tracker has it queued or pinning). Within Config.FetchLimit of
	// the pin's record it is neither a pass nor a failure; after it, a
	// failure. On the wire it is the answer's reason, starting with this
	// text.
	ErrFetching = errors.New("still fetching")
)

// choose is the index of the link taken at depth among n links: a hash
// of the nonce and the depth, so that neither the prover nor anyone else
// knows the path before the challenge.
func choose(nonce [NonceSize]byte, depth, n int) int {
	var d [8]byte
	binary.BigEndian.PutUint64(d[:], uint64(depth))
	h := sha256.Sum256(append(nonce[:], d[:]...))
	return int(binary.BigEndian.Uint64(h[:8]) % uint64(n))
}

// links are the CIDs a block links to, in order: a dag-pb node's links;
// none for a raw block or a codec the audit does not walk (the path ends
// there).
func links(c cid.Cid, data []byte) ([]cid.Cid, error) {
	if c.Prefix().Codec != cid.DagProtobuf {
		return nil, nil
	}
	nd, err := merkledag.DecodeProtobuf(data)
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", c, err)
	}
	out := make([]cid.Cid, 0, len(nd.Links()))
	for _, l := range nd.Links() {
		out = append(out, l.Cid)
	}
	return out, nil
}

// Prove walks ch's path with get, which must read the prover's own
// blockstore only (a block it lacks is an error, never a network fetch),
// and returns the blocks from the root down.
func Prove(ch Challenge, get func(cid.Cid) ([]byte, error)) ([][]byte, error) {
	var proof [][]byte
	c := ch.Root
	for depth := 0; depth < MaxDepth; depth++ {
		b, err := get(c)
		if err != nil {
			return proof, fmt.Errorf("block %s at depth %d: %w", c, depth, err)
		}
		proof = append(proof, b)
		ls, err := links(c, b)
		if err != nil {
			return proof, err
		}
		if len(ls) == 0 {
			break
		}
		c = ls[choose(ch.Nonce, depth, len(ls))]
	}
	return proof, nil
}

// Verify checks proof against ch, and that it was answered (answered)
// no later than deadline after the challenge was sent (sent).
func Verify(ch Challenge, proof [][]byte, sent, answered time.Time, deadline time.Duration) error {
	if answered.Sub(sent) > deadline {
		return fmt.Errorf("%w: %s, deadline %s", ErrLate, answered.Sub(sent).Round(time.Millisecond), deadline)
	}
	c := ch.Root
	var siblings []cid.Cid // the links of the block before
	for depth, b := range proof {
		if depth >= MaxDepth {
			return fmt.Errorf("%w: %d blocks", ErrTooLong, len(proof))
		}
		if len(b) > MaxBlock {
			return fmt.Errorf("%w: %d bytes at depth %d", ErrTooLarge, len(b), depth)
		}
		sum, err := c.Prefix().Sum(b)
		if err != nil || !sum.Equals(c) {
			for _, s := range siblings {
				if other, err := s.Prefix().Sum(b); err == nil && other.Equals(s) {
					return fmt.Errorf("%w: depth %d holds %s, the nonce chose %s", ErrWrongLink, depth, s, c)
				}
			}
			return fmt.Errorf("%w: depth %d, want %s", ErrWrongHash, depth, c)
		}
		ls, err := links(c, b)
		if err != nil {
			return err
		}
		if len(ls) == 0 {
			if depth != len(proof)-1 {
				return fmt.Errorf("%w: %d blocks after the leaf %s", ErrTooLong, len(proof)-1-depth, c)
			}
			return nil
		}
		siblings = ls
		c = ls[choose(ch.Nonce, depth, len(ls))]
	}
	if len(proof) == MaxDepth {
		return nil // proved as deep as proofs go
	}
	return fmt.Errorf("%w: %d blocks, the next is %s", ErrTruncated, len(proof), c)
}
