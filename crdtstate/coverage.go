package crdtstate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/pinring/pinring/api"
)

// What a new epoch's copy covered (ADR 9, amendment 3). Every record
// written to a pinset is stamped with its origin (the peer that packed it)
// and a Seq that grows with each of that origin's writes. An origin's
// deltas form a chain — each links to the heads it had, its own previous
// delta among them — so a peer that has merged a delta, and everything
// under it, has every earlier record of the same origin. The maker of an
// epoch takes the old epoch's heads before its copy, makes sure it has
// merged all below them, and records per origin the highest Seq found
// there (Marks): every record at or below its origin's mark was seen by
// the copy — it is in it, or was removed or replaced before it.

// Marks maps origins to a Seq.
type Marks map[peer.ID]uint64

// MarksOf reads an epoch record's marks.
func MarksOf(ms []api.Mark) Marks {
	out := make(Marks, len(ms))
	for _, m := range ms {
		out[m.Origin] = m.Seq
	}
	return out
}

// Raise keeps, for each origin, the higher of m's and o's.
func (m Marks) Raise(o Marks) {
	for k, v := range o {
		if v > m[k] {
			m[k] = v
		}
	}
}

// List is m as an epoch record writes it, sorted by origin.
func (m Marks) List() []api.Mark {
	out := make([]api.Mark, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, api.Mark{Origin: k, Seq: m[k]})
	}
	return out
}

// Coverage decides which records of an older epoch carry-over brings into
// the current one.
type Coverage struct {
	// Marks are the current epoch record's: what its copy covered.
	Marks Marks
	// Self is the carrying peer: its own records past its mark are its
	// late writes, all of them on its disk.
	Self peer.ID
	// Reach is, for the other origins, up to which Seq the carrier's old
	// pinset holds each one's records with all before them (Reach of its
	// heads; nil when it has not merged all below its heads). A walk of
	// the old epoch: asked only for a late record of a gone origin, so
	// CoverageFor makes it once, when first asked. nil: no reach.
	Reach func() Marks
	// Gone tells the origins that count as gone for good (dead by the
	// repair rule): the carrier carries their late writes within Reach.
	// A live origin carries its own: were another writer to carry one of
	// them too, its copy would be a second element of the pin, and the
	// origin's later removal — of the element it carried, before it heard
	// of the other — would leave the pin in place. nil: nobody is gone.
	Gone func(peer.ID) bool
}

// Late reports whether p, a record of the old epoch, is one the copy did
// not see, to be carried over by this carrier. A record written before
// stamps is carried unless the new epoch removed it (the rule before
// them).
func (c Coverage) Late(p *api.Pin) bool {
	if p.Origin == "" {
		return true
	}
	if p.Seq <= c.Marks[p.Origin] {
		return false
	}
	if p.Origin == c.Self {
		return true
	}
	return c.Gone != nil && c.Gone(p.Origin) && c.Reach != nil && p.Seq <= c.Reach()[p.Origin]
}

// maxWalk bounds the blocks a walk under heads visits.
const maxWalk = 1 << 22

// walk visits every delta under heads once (fn may be nil) and reports
// whether all of them are merged here: each processed, and so every block
// below it (go-ds-crdt marks a delta processed before it has walked its
// children). It reads only what is local; the first block not merged ends
// it with false.
func (s *State) walk(ctx context.Context, heads []cid.Cid, fn func(ipld.Node) error) (bool, error) {
	seen := map[cid.Cid]bool{}
	todo := slices.Clone(heads)
	for len(todo) > 0 {
		if len(seen) > maxWalk {
			return false, fmt.Errorf("more than %d blocks under the heads", maxWalk)
		}
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[c] {
			continue
		}
		seen[c] = true
		done, err := s.deps.Store.Has(ctx, ds.NewKey(s.deps.Namespace).ChildString("b").Child(dshelp.MultihashToDsKey(c.Hash())))
		if err != nil || !done {
			return false, err
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		// Processed, so its block is here: the DAG answers locally.
		nd, err := s.deps.DAG.Get(ctx, c)
		if err != nil {
			return false, fmt.Errorf("delta %s: %w", c, err)
		}
		if fn != nil {
			if err := fn(nd); err != nil {
				return false, err
			}
		}
		for _, l := range nd.Links() {
			todo = append(todo, l.Cid)
		}
	}
	return true, nil
}

// Reach walks the deltas under heads and returns, per origin, the highest
// Seq of a record among them, and whether everything under heads is
// merged here (if not, the marks found mean nothing and are nil).
func (s *State) Reach(ctx context.Context, heads []cid.Cid) (Marks, bool, error) {
	reach := Marks{}
	ok, err := s.walk(ctx, heads, func(nd ipld.Node) error {
		d, err := deltaOf(nd)
		if err != nil {
			return err
		}
		for _, e := range d.GetElements() {
			if !strings.HasPrefix(e.GetKey(), pinsPrefix) {
				continue // an admission record
			}
			p, err := DecodePin(e.GetValue())
			if err != nil {
				return fmt.Errorf("delta %s, record %s: %w", nd.Cid(), e.GetKey(), err)
			}
			if p.Origin != "" && p.Seq > reach[p.Origin] {
				reach[p.Origin] = p.Seq
			}
		}
		return nil
	})
	if !ok || err != nil {
		return nil, false, err
	}
	return reach, true, nil
}

// deltaOf decodes a delta block.
func deltaOf(nd ipld.Node) (*pb.Delta, error) {
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		return nil, fmt.Errorf("delta %s is not a protobuf node", nd.Cid())
	}
	var d pb.Delta
	if err := proto.Unmarshal(pn.Data(), &d); err != nil {
		return nil, fmt.Errorf("delta %s: %w", nd.Cid(), err)
	}
	return &d, nil
}

// CoverageFor is the coverage a writer carries over from old with: the
// marks of the record it moves to, gone, and the reach of old's heads,
// walked when first needed (often never: no writer is gone).
func CoverageFor(ctx context.Context, old *State, rec api.Epoch, self peer.ID, gone func(peer.ID) bool) Coverage {
	reach := sync.OnceValue(func() Marks {
		reach, _, err := old.Reach(ctx, old.Heads(ctx))
		if err != nil {
			// Too large or unreadable: this writer carries its own records.
			logger.Warnf("reading what the old pinset holds of each writer (only this peer's own late writes are carried over): %s", err)
			return nil
		}
		return reach
	})
	return Coverage{Marks: MarksOf(rec.Marks), Self: self, Reach: reach, Gone: gone}
}
