package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PinType tells what a pin is for.
type PinType uint8

// Pin types. The JSON names are IPFS Cluster's.
const (
	BadType        PinType = iota
	DataType               // an ordinary pin: "pin"
	MetaType               // "meta-pin"
	ClusterDAGType         // "clusterdag-pin"
	ShardType              // "shard-pin"
)

var pinTypeNames = map[PinType]string{
	DataType:       "pin",
	MetaType:       "meta-pin",
	ClusterDAGType: "clusterdag-pin",
	ShardType:      "shard-pin",
}

func (t PinType) String() string {
	if s, ok := pinTypeNames[t]; ok {
		return s
	}
	return "bad"
}

// ParsePinType reads a type name.
func ParsePinType(s string) (PinType, error) {
	for t, n := range pinTypeNames {
		if n == s {
			return t, nil
		}
	}
	return BadType, fmt.Errorf("unknown pin type %q", s)
}

// MarshalText encodes the type name (a JSON string).
func (t PinType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalJSON accepts a name or IPFS Cluster 0.x's integer form.
func (t *PinType) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		pt, err := ParsePinType(s)
		*t = pt
		return err
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("bad pin type %s", string(b))
	}
	// 0.x used 1<<iota starting at DataType=1.
	switch n {
	case 1:
		*t = DataType
	case 2:
		*t = MetaType
	case 4:
		*t = ClusterDAGType
	case 8:
		*t = ShardType
	default:
		return fmt.Errorf("bad pin type %d", n)
	}
	return nil
}

// PinMode is recursive or direct.
type PinMode uint8

// Pin modes.
const (
	PinModeRecursive PinMode = iota
	PinModeDirect
)

func (m PinMode) String() string {
	if m == PinModeDirect {
		return "direct"
	}
	return "recursive"
}

// ParsePinMode reads "recursive" (or "") and "direct".
func ParsePinMode(s string) (PinMode, error) {
	switch s {
	case "", "recursive":
		return PinModeRecursive, nil
	case "direct":
		return PinModeDirect, nil
	}
	return PinModeRecursive, fmt.Errorf("invalid pin mode %q: want recursive or direct", s)
}

// MarshalText encodes the mode name (a JSON string).
func (m PinMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON decodes the mode name.
func (m *PinMode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	pm, err := ParsePinMode(s)
	*m = pm
	return err
}

// PinOptions are what a user chooses when pinning.
type PinOptions struct {
	ReplicationFactorMin int               `json:"replication_factor_min"`
	ReplicationFactorMax int               `json:"replication_factor_max"`
	Name                 string            `json:"name"`
	Mode                 PinMode           `json:"mode"`
	ShardSize            uint64            `json:"shard_size"`
	UserAllocations      []peer.ID         `json:"user_allocations,omitempty"`
	ExpireAt             time.Time         `json:"expire_at"`
	Metadata             map[string]string `json:"metadata"`
	PinUpdate            Cid               `json:"pin_update"`
	Origins              []ma.Multiaddr    `json:"origins"`
}

// Pin is one entry of the pinset (docs/architecture.md, "The pinset and
// the tracker"; its encoding: docs/adr/0002-pin-encoding.md).
type Pin struct {
	Cid         Cid       `json:"cid"`
	Type        PinType   `json:"type"`
	Allocations []peer.ID `json:"allocations"`
	// MaxDepth is -1 for recursive pins and 0 for direct ones.
	MaxDepth  int       `json:"max_depth"`
	Reference Cid       `json:"reference"`
	Timestamp time.Time `json:"timestamp"`
	PinOptions
	// Version increases every time this CID's record is rewritten.
	Version uint64 `json:"version"`
	// Writer identifies the key that wrote this record.
	Writer string `json:"writer,omitempty"`
	// Origin and Seq stamp where this record was first written: the peer
	// that packed it into the pinset and its place in that peer's writes
	// (increasing: the epoch in the top 24 bits, the journal's sequence
	// number below). Copies and carry-overs keep them. An epoch record's
	// marks say up to which Seq of each origin its copy saw (ADR 9).
	// Empty on records written before stamps.
	Origin peer.ID `json:"-"`
	Seq    uint64  `json:"-"`

	// Unknown holds encoded fields this version does not know, so that a
	// round trip through an older peer keeps a newer peer's data.
	Unknown []byte `json:"-"`
}

// ErrBadPin is returned by Validate.
var ErrBadPin = errors.New("invalid pin")

// Validate checks a pin before it enters the pinset.
func (p *Pin) Validate() error {
	if !p.Cid.Defined() {
		return fmt.Errorf("%w: no CID", ErrBadPin)
	}
	if p.Type == BadType {
		return fmt.Errorf("%w: bad type", ErrBadPin)
	}
	rmin, rmax := p.ReplicationFactorMin, p.ReplicationFactorMax
	if rmin < -1 || rmax < -1 || rmin == 0 && rmax != 0 {
		return fmt.Errorf("%w: replication factors min=%d max=%d (each must be -1 or ≥ 1)", ErrBadPin, rmin, rmax)
	}
	if rmax != -1 && rmin > rmax {
		return fmt.Errorf("%w: replication-min %d is larger than replication-max %d", ErrBadPin, rmin, rmax)
	}
	if rmax != -1 && rmin == -1 {
		return fmt.Errorf("%w: replication-min -1 (everywhere) needs replication-max -1", ErrBadPin)
	}
	if n := p.Cid.ByteLen(); n > MaxCidBytes {
		return fmt.Errorf("%w: the CID is %d bytes, at most %d", ErrBadPin, n, MaxCidBytes)
	}
	if p.PinUpdate.Defined() && p.PinUpdate.ByteLen() > MaxCidBytes {
		return fmt.Errorf("%w: the pin-update CID is %d bytes, at most %d", ErrBadPin, p.PinUpdate.ByteLen(), MaxCidBytes)
	}
	if len(p.Name) > MaxNameBytes {
		return fmt.Errorf("%w: the name is %d bytes, at most %d", ErrBadPin, len(p.Name), MaxNameBytes)
	}
	if len(p.Metadata) > MaxMetadataEntries {
		return fmt.Errorf("%w: %d metadata entries, at most %d", ErrBadPin, len(p.Metadata), MaxMetadataEntries)
	}
	size := 0
	for k, v := range p.Metadata {
		if k == "" {
			return fmt.Errorf("%w: empty metadata key", ErrBadPin)
		}
		if len(k) > MaxNameBytes {
			return fmt.Errorf("%w: metadata key of %d bytes, at most %d", ErrBadPin, len(k), MaxNameBytes)
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataBytes {
		return fmt.Errorf("%w: metadata of %d bytes, at most %d", ErrBadPin, size, MaxMetadataBytes)
	}
	if len(p.Origins) > MaxOrigins {
		return fmt.Errorf("%w: %d origins, at most %d", ErrBadPin, len(p.Origins), MaxOrigins)
	}
	for _, o := range p.Origins {
		if n := len(o.Bytes()); n > MaxAddrBytes {
			return fmt.Errorf("%w: an origin of %d bytes, at most %d", ErrBadPin, n, MaxAddrBytes)
		}
	}
	if len(p.UserAllocations) > MaxUserAllocations {
		return fmt.Errorf("%w: %d user allocations, at most %d", ErrBadPin, len(p.UserAllocations), MaxUserAllocations)
	}
	return nil
}

// The bounds of a pin record: every record is stored, sent to every peer
// and kept in their memory, so none may be large (docs/rest-api.md).
const (
	MaxNameBytes       = 255 // a name, a metadata key (the Pinning Service API's bound)
	MaxMetadataEntries = 64
	MaxMetadataBytes   = 16 << 10 // keys and values together
	MaxOrigins         = 20       // the Pinning Service API's bound
	MaxAddrBytes       = 1 << 10  // one origin multiaddr
	MaxUserAllocations = 256
)

// IsRemote reports whether the pin is allocated elsewhere than pid.
func (p *Pin) IsRemote(pid peer.ID) bool {
	if p.ReplicationFactorMax == -1 || len(p.Allocations) == 0 {
		return false
	}
	return !slices.Contains(p.Allocations, pid)
}

// Expired reports whether the pin has an expiry in the past.
func (p *Pin) Expired(now time.Time) bool {
	return !p.ExpireAt.IsZero() && now.After(p.ExpireAt)
}

// Equal compares the user-visible contents of two pins (not the version,
// writer or timestamp).
func (p *Pin) Equal(o *Pin) bool {
	return p.Cid.Equals(o.Cid.Cid) && p.Type == o.Type &&
		slices.Equal(p.Allocations, o.Allocations) && p.MaxDepth == o.MaxDepth &&
		p.Reference.Equals(o.Reference.Cid) &&
		p.ReplicationFactorMin == o.ReplicationFactorMin &&
		p.ReplicationFactorMax == o.ReplicationFactorMax &&
		p.Name == o.Name && p.Mode == o.Mode && p.ShardSize == o.ShardSize &&
		slices.Equal(p.UserAllocations, o.UserAllocations) &&
		p.ExpireAt.Equal(o.ExpireAt) && maps.Equal(p.Metadata, o.Metadata) &&
		p.PinUpdate.Equals(o.PinUpdate.Cid) &&
		slices.EqualFunc(p.Origins, o.Origins, func(a, b ma.Multiaddr) bool { return a.Equal(b) })
}

// ParseOrigins splits a comma-separated multiaddr list.
func ParseOrigins(s string) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		m, err := ma.NewMultiaddr(part)
		if err != nil {
			return nil, fmt.Errorf("invalid origin multiaddr %q: %v", part, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// ParsePeers splits a comma-separated list of peer IDs.
func ParsePeers(s string) ([]peer.ID, error) {
	var out []peer.ID
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := peer.Decode(part)
		if err != nil {
			return nil, fmt.Errorf("invalid peer ID %q: %v", part, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// DefaultReplication fills in the replication factors p leaves open: both
// from the cluster's (rmin, rmax) when neither is set; the maximum from the
// minimum; the minimum as 1 (or -1, every peer, with a maximum of -1).
func (p *Pin) DefaultReplication(rmin, rmax int) {
	switch {
	case p.ReplicationFactorMin == 0 && p.ReplicationFactorMax == 0:
		p.ReplicationFactorMin, p.ReplicationFactorMax = rmin, rmax
	case p.ReplicationFactorMax == 0:
		p.ReplicationFactorMax = p.ReplicationFactorMin
	case p.ReplicationFactorMin == 0:
		p.ReplicationFactorMin = min(1, p.ReplicationFactorMax)
	}
}

// Inherit copies from the pin p updates (pin-update) what p leaves unset:
// replication factors, name, user allocations, expiry, metadata, origins.
func (p *Pin) Inherit(from *Pin) {
	if p.ReplicationFactorMin == 0 && p.ReplicationFactorMax == 0 {
		p.ReplicationFactorMin, p.ReplicationFactorMax = from.ReplicationFactorMin, from.ReplicationFactorMax
	}
	if p.Name == "" {
		p.Name = from.Name
	}
	if len(p.UserAllocations) == 0 {
		p.UserAllocations = from.UserAllocations
	}
	if p.ExpireAt.IsZero() {
		p.ExpireAt = from.ExpireAt
	}
	if len(p.Metadata) == 0 {
		p.Metadata = from.Metadata
	}
	if len(p.Origins) == 0 {
		p.Origins = from.Origins
	}
}
