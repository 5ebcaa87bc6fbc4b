// Package api holds the types that cross component boundaries and the wire:
// pins, per-peer pin status, peer identities and the error body. Their JSON
// shapes follow IPFS Cluster's REST API so that its clients work unchanged.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// Version is Pinring's release version.
const Version = "0.1.0"

// Cid wraps cid.Cid so that it encodes as a plain JSON string (as IPFS
// Cluster 1.x does) and decodes from either a string or {"/": "..."}.
type Cid struct {
	cid.Cid
}

// NewCid wraps c.
func NewCid(c cid.Cid) Cid { return Cid{c} }

// ParseCid decodes s into a Cid with an error that names the bad input.
func ParseCid(s string) (Cid, error) {
	s = strings.TrimSpace(s)
	if len(s) > 2*MaxCidBytes { // any base spells MaxCidBytes in fewer
		return Cid{}, fmt.Errorf("%w: %d characters: a CID is at most %d bytes", ErrBadCid, len(s), MaxCidBytes)
	}
	c, err := cid.Decode(s)
	if err != nil {
		return Cid{}, fmt.Errorf("%w: %q: %v", ErrBadCid, s, err)
	}
	if n := c.ByteLen(); n > MaxCidBytes {
		return Cid{}, fmt.Errorf("%w: %d bytes: a CID is at most %d bytes (kubo's identity CIDs hold at most 128)", ErrBadCid, n, MaxCidBytes)
	}
	return Cid{c}, nil
}

// MaxCidBytes bounds a CID's binary length. A CID is a key of the pinset:
// one too long for the datastore would stop every write after it.
const MaxCidBytes = 256

// ErrBadCid is returned when a string is not a CID.
var ErrBadCid = errors.New("invalid CID")

// Key is the normalised form used to key the pinset: CIDv1 in base32, so
// that a pin added as CIDv0 and as CIDv1 is the same pin.
func (c Cid) Key() string {
	if !c.Defined() {
		return ""
	}
	return cid.NewCidV1(c.Type(), c.Hash()).String()
}

// Forms are the ways kubo may know this CID: as given, and for a dag-pb
// sha2-256 CID its other version (kubo pins by the exact CID).
func (c Cid) Forms() []Cid {
	out := []Cid{c}
	if c.Type() != cid.DagProtobuf || c.Prefix().MhType != multihash.SHA2_256 {
		return out
	}
	if c.Version() == 1 {
		return append(out, Cid{cid.NewCidV0(c.Hash())})
	}
	return append(out, Cid{cid.NewCidV1(cid.DagProtobuf, c.Hash())})
}

// MarshalJSON encodes the CID as a JSON string, not as go-cid's
// {"/": ...}, and an undefined CID as null, as IPFS Cluster does (its
// clients refuse "" as "cid too short"). A CID's string form needs no
// escaping.
func (c Cid) MarshalJSON() ([]byte, error) {
	if !c.Defined() {
		return []byte("null"), nil
	}
	s := c.String()
	b := make([]byte, 0, len(s)+2)
	return append(append(append(b, '"'), s...), '"'), nil
}

// UnmarshalJSON accepts "Qm...", {"/":"Qm..."}, and null or "" for no CID.
func (c *Cid) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var link struct {
			Slash string `json:"/"`
		}
		if err2 := json.Unmarshal(b, &link); err2 != nil {
			return fmt.Errorf("%w: %s", ErrBadCid, string(b))
		}
		s = link.Slash
	}
	if s == "" {
		*c = Cid{}
		return nil
	}
	parsed, err := ParseCid(s)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// Error is the JSON body of every REST API error.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e Error) Error() string { return fmt.Sprintf("%s (%d)", e.Message, e.Code) }

// Metric is one measurement a peer published about itself, as IPFS
// Cluster's API shows it.
type Metric struct {
	Name  string  `json:"name"`
	Peer  peer.ID `json:"peer"`
	Value string  `json:"value"`
	// Expire is when the metric stops being valid (Unix nanoseconds).
	Expire        int64 `json:"expire"`
	Valid         bool  `json:"valid"`
	Weight        int64 `json:"weight"`
	Partitionable bool  `json:"partitionable"`
	// ReceivedAt is when this peer received it (Unix nanoseconds).
	ReceivedAt int64 `json:"received_at"`
}

// Alert says that a peer's metric expired without being renewed.
type Alert struct {
	Metric
	Peername    string    `json:"peername"`
	TriggeredAt time.Time `json:"triggered_at"`
	// Left is true when the peer said it was leaving the cluster
	// (Pinring addition).
	Left bool `json:"left,omitempty"`
}

// AddParams are the options of an add: how files become DAGs (as ipfs
// add's), how they are pinned, and erasure coding.
type AddParams struct {
	PinOptions
	Chunker    string `json:"chunker"`
	RawLeaves  bool   `json:"raw_leaves"`
	CidVersion int    `json:"cid_version"`
	HashFun    string `json:"hash"`
	Layout     string `json:"layout"`
	// Format is what the upload holds: "unixfs" (files, the default) or
	// "car" (one CAR file with one root, whose blocks are imported as they
	// are and whose root is pinned).
	Format string `json:"format,omitempty"`
	// Wrap puts the files in a directory (wrap-with-directory).
	Wrap bool `json:"wrap"`
	// NoPin stores the blocks without pinning.
	NoPin bool `json:"no_pin"`
	// Hidden includes files whose names start with "." (the client
	// chooses the files it sends).
	Hidden bool `json:"hidden"`
	// Local stores the blocks in this peer's kubo only; the allocated
	// peers fetch them when they pin.
	Local bool `json:"local"`
	// Erasure stores one file as DataShards + ParityShards shards.
	Erasure      bool `json:"erasure"`
	DataShards   int  `json:"data_shards"`
	ParityShards int  `json:"parity_shards"`
}

// EntryKind is what an entry of an upload is.
type EntryKind int

const (
	EntryFile    EntryKind = iota // Body is the file's content
	EntryDir                      // a directory, kept even when empty; no Body
	EntrySymlink                  // a symbolic link; Body is its target
)

// AddEntry is one entry of an upload, as the HTTP layer read it: Path is
// slash-separated and relative (directories included), and Body may be
// read only until the next entry is asked for.
type AddEntry struct {
	Path string
	Kind EntryKind
	Body io.Reader
}

// AddedOutput reports one added file or directory, as IPFS Cluster's add
// does: the last one reported is the root that is pinned.
type AddedOutput struct {
	Name string `json:"name"`
	Cid  Cid    `json:"cid"`
	// Bytes is how many bytes a CAR import read (its blocks' total size).
	Bytes int64 `json:"bytes,omitempty"`
	// Size is the DAG's cumulative size (ipfs add's "Size"); for a CAR,
	// the file size when its root is a UnixFS file; for an erasure-coded
	// file and its shards, their length.
	Size uint64 `json:"size,omitempty"`
	// Allocations are the peers the pin went to (none with no-pin).
	Allocations []peer.ID `json:"allocations,omitempty"`
}

// ECRepair reports the shards of one erasure-coded file that a repair
// rebuilt and where they went.
type ECRepair struct {
	Cid     Cid      `json:"cid"`
	Rebuilt []int    `json:"rebuilt"` // shard indexes
	To      []string `json:"to"`      // peer IDs, one per rebuilt shard
	Error   string   `json:"error,omitempty"`
}

// Token is an issued token and what it allows.
type Token struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
	ReadOnly  bool      `json:"read_only"`
}
