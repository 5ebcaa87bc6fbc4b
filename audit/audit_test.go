package audit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
)

// tree builds a three-level DAG (a root, fan children, fan raw leaves
// each) and returns its root and blocks.
func tree(t *testing.T, fan int) (cid.Cid, map[cid.Cid][]byte) {
	t.Helper()
	blocks := map[cid.Cid][]byte{}
	root := &merkledag.ProtoNode{}
	for i := range fan {
		mid := &merkledag.ProtoNode{}
		for j := range fan {
			leaf := merkledag.NewRawNode(fmt.Appendf(nil, "leaf %d/%d", i, j))
			blocks[leaf.Cid()] = leaf.RawData()
			if err := mid.AddNodeLink(fmt.Sprint(j), leaf); err != nil {
				t.Fatal(err)
			}
		}
		blocks[mid.Cid()] = mid.RawData()
		if err := root.AddNodeLink(fmt.Sprint(i), mid); err != nil {
			t.Fatal(err)
		}
	}
	blocks[root.Cid()] = root.RawData()
	return root.Cid(), blocks
}

func challenge(root cid.Cid) Challenge {
	ch := Challenge{Root: root}
	rand.Read(ch.Nonce[:])
	return ch
}

func getter(blocks map[cid.Cid][]byte) func(cid.Cid) ([]byte, error) {
	return func(c cid.Cid) ([]byte, error) {
		b, ok := blocks[c]
		if !ok {
			return nil, errors.New("not in this blockstore")
		}
		return b, nil
	}
}

// An honest prover passes; the path is the nonce's: another nonce takes
// another path (over many nonces, every leaf is visited).
func TestHonestProofPasses(t *testing.T) {
	root, blocks := tree(t, 4)
	now := time.Now()
	leaves := map[string]bool{}
	for range 200 {
		ch := challenge(root)
		proof, err := Prove(ch, getter(blocks))
		if err != nil {
			t.Fatal(err)
		}
		if len(proof) != 3 {
			t.Fatalf("a path of %d blocks, want 3", len(proof))
		}
		if err := Verify(ch, proof, now, now.Add(time.Second), 5*time.Second); err != nil {
			t.Fatalf("an honest proof: %v", err)
		}
		leaves[string(proof[2])] = true
	}
	if len(leaves) != 16 {
		t.Fatalf("200 nonces reached %d of the 16 leaves", len(leaves))
	}
}

// Every way of cheating is caught, and says which.
func TestCheatingProofsFail(t *testing.T) {
	root, blocks := tree(t, 4)
	ch := challenge(root)
	proof, err := Prove(ch, getter(blocks))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// The sibling of the chosen leaf: the same parent, another link.
	var sibling []byte
	for c, b := range blocks {
		if c.Prefix().Codec == cid.Raw && !slices.Equal(b, proof[2]) {
			if p, err := merkledag.DecodeProtobuf(proof[1]); err == nil {
				for _, l := range p.Links() {
					if l.Cid.Equals(c) {
						sibling = b
					}
				}
			}
		}
	}
	if sibling == nil {
		t.Fatal("no sibling found")
	}
	substituted := slices.Clone(proof)
	substituted[2] = []byte("made up")
	wrongSibling := slices.Clone(proof)
	wrongSibling[2] = sibling
	longer := append(slices.Clone(proof), []byte("extra"))
	for _, tc := range []struct {
		what     string
		proof    [][]byte
		answered time.Time
		want     error
	}{
		{"a truncated path", proof[:2], now, ErrTruncated},
		{"no block at all", nil, now, ErrTruncated},
		{"a substituted block", substituted, now, ErrWrongHash},
		{"the wrong sibling", wrongSibling, now, ErrWrongLink},
		{"a block after the leaf", longer, now, ErrTooLong},
		{"a late answer", proof, now.Add(6 * time.Second), ErrLate},
	} {
		err := Verify(ch, tc.proof, now, tc.answered, 5*time.Second)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}
	// A proof made for another nonce (an answer prepared in advance, or
	// replayed) fails once its path parts from this nonce's.
	for {
		other := mustProve(t, challenge(root), blocks)
		if slices.EqualFunc(other, proof, slices.Equal) {
			continue
		}
		if err := Verify(ch, other, now, now, 5*time.Second); !errors.Is(err, ErrWrongLink) {
			t.Fatalf("another nonce's proof: %v, want ErrWrongLink", err)
		}
		break
	}
	// A prover missing a block of the path cannot answer.
	missing := map[cid.Cid][]byte{}
	for c, b := range blocks {
		if !slices.Equal(b, proof[2]) {
			missing[c] = b
		}
	}
	if _, err := Prove(ch, getter(missing)); err == nil {
		t.Fatal("a prover without the chosen leaf answered")
	}
}

func mustProve(t *testing.T, ch Challenge, blocks map[cid.Cid][]byte) [][]byte {
	t.Helper()
	p, err := Prove(ch, getter(blocks))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
