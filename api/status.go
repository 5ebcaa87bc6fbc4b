package api

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TrackerStatus is the state of one pin on one peer. The strings are IPFS
// Cluster's.
type TrackerStatus string

// Tracker statuses.
const (
	StatusUndefined            TrackerStatus = "undefined"
	StatusClusterError         TrackerStatus = "cluster_error"
	StatusPinError             TrackerStatus = "pin_error"
	StatusUnpinError           TrackerStatus = "unpin_error"
	StatusError                TrackerStatus = "error"
	StatusPinned               TrackerStatus = "pinned"
	StatusPinning              TrackerStatus = "pinning"
	StatusUnpinning            TrackerStatus = "unpinning"
	StatusUnpinned             TrackerStatus = "unpinned"
	StatusRemote               TrackerStatus = "remote"
	StatusPinQueued            TrackerStatus = "pin_queued"
	StatusUnpinQueued          TrackerStatus = "unpin_queued"
	StatusQueued               TrackerStatus = "queued"
	StatusSharded              TrackerStatus = "sharded"
	StatusUnexpectedlyUnpinned TrackerStatus = "unexpectedly_unpinned"
)

// AllStatuses lists every status a filter may name.
var AllStatuses = []TrackerStatus{
	StatusUndefined, StatusClusterError, StatusPinError, StatusUnpinError,
	StatusError, StatusPinned, StatusPinning, StatusUnpinning, StatusUnpinned,
	StatusRemote, StatusPinQueued, StatusUnpinQueued, StatusQueued,
	StatusSharded, StatusUnexpectedlyUnpinned,
}

// IsError reports whether the status is one of the error kinds.
func (s TrackerStatus) IsError() bool {
	return s == StatusClusterError || s == StatusPinError || s == StatusUnpinError || s == StatusError
}

// StatusFilter selects statuses. The zero value matches everything.
type StatusFilter []TrackerStatus

// ParseStatusFilter reads a comma-separated list of status names.
func ParseStatusFilter(s string) (StatusFilter, error) {
	var f StatusFilter
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		st := TrackerStatus(part)
		if !slices.Contains(AllStatuses, st) {
			return nil, fmt.Errorf("invalid status filter %q: want one of %s", part, joinStatuses())
		}
		f = append(f, st)
	}
	return f, nil
}

func joinStatuses() string {
	names := make([]string, len(AllStatuses))
	for i, s := range AllStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Match reports whether st passes the filter: "error" matches every error
// kind and "queued" both queued kinds.
func (f StatusFilter) Match(st TrackerStatus) bool {
	if len(f) == 0 {
		return true
	}
	for _, want := range f {
		switch {
		case want == st:
			return true
		case want == StatusError && st.IsError():
			return true
		case want == StatusQueued && (st == StatusPinQueued || st == StatusUnpinQueued):
			return true
		}
	}
	return false
}

// PinInfoShort is one peer's view of one pin, as in GlobalPinInfo.peer_map.
type PinInfoShort struct {
	PeerName      string         `json:"peername"`
	IPFS          peer.ID        `json:"ipfs_peer_id,omitempty"`
	IPFSAddresses []ma.Multiaddr `json:"ipfs_peer_addresses"`
	Status        TrackerStatus  `json:"status"`
	TS            time.Time      `json:"timestamp"`
	Error         string         `json:"error"`
	AttemptCount  int            `json:"attempt_count"`
	PriorityPin   bool           `json:"priority_pin"`
	// LastVerified and Audit are what the answering peer's audits found
	// of this replica (Pinring additions; docs/adr/0008-audits.md): when
	// it last proved it holds the pin, and "verified" or "failing (n):
	// why". Empty where that peer never audited it.
	LastVerified time.Time `json:"last_verified,omitzero"`
	Audit        string    `json:"audit,omitempty"`
}

// PinInfo is the status of one pin on one peer.
type PinInfo struct {
	Cid         Cid               `json:"cid"`
	Name        string            `json:"name"`
	Peer        peer.ID           `json:"peer"`
	Allocations []peer.ID         `json:"allocations"`
	Origins     []ma.Multiaddr    `json:"origins"`
	Created     time.Time         `json:"created"`
	Metadata    map[string]string `json:"metadata"`
	// Type and Reference tell erasure-coded shards and their files apart
	// (Pinring additions).
	Type      PinType `json:"type,omitempty"`
	Reference Cid     `json:"reference,omitzero"`
	PinInfoShort
}

// GlobalPinInfo is the status of one pin on every peer that reported it.
type GlobalPinInfo struct {
	Cid         Cid                     `json:"cid"`
	Name        string                  `json:"name"`
	Allocations []peer.ID               `json:"allocations"`
	Origins     []ma.Multiaddr          `json:"origins"`
	Created     time.Time               `json:"created"`
	Metadata    map[string]string       `json:"metadata"`
	PeerMap     map[string]PinInfoShort `json:"peer_map"`
	// Type and Reference (Pinring additions): a shard-pin's reference is
	// its erasure-coded file; a meta-pin describes such a file.
	Type      PinType `json:"type,omitempty"`
	Reference Cid     `json:"reference,omitzero"`
}

// Add merges one peer's PinInfo into the global view.
func (g *GlobalPinInfo) Add(pi PinInfo) {
	if !g.Cid.Defined() {
		g.Cid = pi.Cid
		g.Name = pi.Name
		g.Allocations = pi.Allocations
		g.Origins = pi.Origins
		g.Created = pi.Created
		g.Metadata = pi.Metadata
		g.Type, g.Reference = pi.Type, pi.Reference
	}
	if g.PeerMap == nil {
		g.PeerMap = make(map[string]PinInfoShort)
	}
	g.PeerMap[pi.Peer.String()] = pi.PinInfoShort
}

// Keep applies a status filter as IPFS Cluster does: it drops the peers
// whose status does not pass it from the peer map and reports whether any
// is left. No filter keeps everything.
func (g *GlobalPinInfo) Keep(f StatusFilter) bool {
	if len(f) == 0 {
		return true
	}
	maps.DeleteFunc(g.PeerMap, func(_ string, p PinInfoShort) bool { return !f.Match(p.Status) })
	return len(g.PeerMap) > 0
}

// IPFSID is the identity of a peer's kubo.
type IPFSID struct {
	ID        peer.ID        `json:"id,omitempty"`
	Addresses []ma.Multiaddr `json:"addresses"`
	Error     string         `json:"error"`
}

// ID describes a cluster peer (GET /id).
type ID struct {
	ID                    peer.ID        `json:"id"`
	Addresses             []ma.Multiaddr `json:"addresses"`
	ClusterPeers          []peer.ID      `json:"cluster_peers"`
	ClusterPeersAddresses []ma.Multiaddr `json:"cluster_peers_addresses"`
	Version               string         `json:"version"`
	Commit                string         `json:"commit"`
	RPCProtocolVersion    string         `json:"rpc_protocol_version"`
	Error                 string         `json:"error"`
	IPFS                  IPFSID         `json:"ipfs"`
	Peername              string         `json:"peername"`
	// LastSeen is when this peer was last heard from (Pinring addition;
	// zero for the answering peer itself).
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Connected tells whether the answering peer has a live connection to
	// this one (Pinring addition).
	Connected bool `json:"connected"`
	// Cluster is the cluster's name (Pinring addition).
	Cluster string `json:"cluster,omitempty"`
	// Role is RoleWriter when the peer holds a write key of the cluster,
	// RoleFollower otherwise (Pinring addition).
	Role string `json:"role,omitempty"`
	// WriteKey is the write public key the peer signs with, and
	// WriteKeyProof that key's endorsement of the peer's ID: with it,
	// other peers accept the peer as a writer (Pinring addition).
	WriteKey      string `json:"write_key,omitempty"`
	WriteKeyProof []byte `json:"write_key_proof,omitempty"`
	// ConnectedTo are the cluster peers this peer is connected to, as it
	// announced them (Pinring addition; for the connectivity graph).
	ConnectedTo []peer.ID `json:"connected_to,omitempty"`
	// IPFSConnectedTo are the other cluster peers' kubos this peer's kubo
	// is connected to, as it last announced (Pinring addition).
	IPFSConnectedTo []peer.ID `json:"ipfs_connected_to,omitempty"`
	// Admission is whether the answering peer would allocate pins to
	// this one, and why: one of the Admission* values (Pinring addition).
	Admission string `json:"admission,omitempty"`
	// Audit is what the answering peer's audits of this one found, in a
	// few words ("" when it audited none) (Pinring addition).
	Audit string `json:"audit,omitempty"`
}

// Graph is the cluster's connectivity as seen from one peer: every
// cluster peer, its kubo, and who is connected to whom (IPFS Cluster's
// /health/graph shape, trimmed).
type Graph struct {
	ClusterID    peer.ID              `json:"cluster_id"`
	IDToPeername map[string]string    `json:"id_to_peername"`
	ClusterLinks map[string][]peer.ID `json:"cluster_links"`
	// ClusterTrustLinks says which peers are trusted: here, which hold a
	// write key.
	ClusterTrustLinks map[string]bool    `json:"cluster_trust_links"`
	ClusterToIPFS     map[string]peer.ID `json:"cluster_to_ipfs"`
	// IPFSLinks are, by kubo peer ID, the cluster peers' kubos each kubo
	// is connected to.
	IPFSLinks map[string][]peer.ID `json:"ipfs_links"`
}

// Peer roles.
const (
	RoleWriter   = "writer"
	RoleFollower = "follower"
)

// Whether a peer is allocated pins (ID.Admission), as one peer sees it.
const (
	// AdmissionWriter: it holds a write key; writers are always members.
	AdmissionWriter = "writer"
	// AdmissionAdmitted: a writer admitted it.
	AdmissionAdmitted = "admitted"
	// AdmissionOpen: nobody admitted it, and the ring's policy
	// (allocate.admission "open") allocates to every peer.
	AdmissionOpen = "open"
	// AdmissionNone: nobody admitted it; it follows and pins the pins
	// meant for every peer, and is allocated nothing else.
	AdmissionNone = "not admitted"
	// AdmissionRevoked: a writer revoked it; its pins move elsewhere.
	AdmissionRevoked = "revoked"
)

// Admission is a writer's decision about one peer, kept in the pinset's
// CRDT (so every writer sees it, signed like any write): the peer is
// admitted (allocated pins) or revoked (allocated nothing, its pins
// moved away, whatever the ring's policy).
type Admission struct {
	Peer    peer.ID   `json:"peer"`
	Revoked bool      `json:"revoked"`
	By      peer.ID   `json:"by"`             // the writer peer that decided
	At      time.Time `json:"at"`             // when
	Note    string    `json:"note,omitempty"` // the curator's words, at most 255 bytes
	// Verified is when the peer first passed an audit since it was
	// admitted: until then allocations to it are capped
	// (audit.unverified_cap). Zero: not yet.
	Verified time.Time `json:"verified,omitzero"`
}

// AuditResult is one audit of one peer for one pin (docs/adr/0008-audits.md):
// whether the peer proved, within the deadline, that its kubo holds a
// path of the pin's DAG chosen at random.
type AuditResult struct {
	Cid      Cid     `json:"cid"`
	Peer     peer.ID `json:"peer"`
	Peername string  `json:"peername,omitempty"`
	OK       bool    `json:"ok"`
	// Fetching: the peer lacks the blocks but is still fetching the pin
	// (within audit.fetch_limit of its record): no proof, no failure.
	Fetching bool   `json:"fetching,omitempty"`
	Error    string `json:"error,omitempty"`
	Blocks   int    `json:"blocks"`
	Bytes    int    `json:"bytes"`
	TookMs   int64  `json:"took_ms"`
}

// MaxAdmissionNote bounds Admission.Note.
const MaxAdmissionNote = 255

// IPFSPinStatus is how kubo has a CID pinned.
type IPFSPinStatus string

// Kubo pin types.
const (
	IPFSPinRecursive IPFSPinStatus = "recursive"
	IPFSPinDirect    IPFSPinStatus = "direct"
	IPFSPinIndirect  IPFSPinStatus = "indirect"
	IPFSPinUnpinned  IPFSPinStatus = "unpinned"
)

// IsPinned reports whether the CID is pinned in a way that satisfies mode.
func (s IPFSPinStatus) IsPinned(mode PinMode) bool {
	if mode == PinModeDirect {
		return s == IPFSPinDirect || s == IPFSPinRecursive
	}
	return s == IPFSPinRecursive
}

// IPFSPinInfo is one line of kubo's pin ls.
type IPFSPinInfo struct {
	Cid  Cid           `json:"cid"`
	Type IPFSPinStatus `json:"type"`
}

// IPFSRepoStat is what kubo says about its repository.
type IPFSRepoStat struct {
	RepoSize   uint64 `json:"repo_size"`
	StorageMax uint64 `json:"storage_max"`
}

// IPFSRepoGC is one block a kubo garbage collection removed (or an error
// it met).
type IPFSRepoGC struct {
	Key   Cid    `json:"key,omitzero"`
	Error string `json:"error,omitempty"`
}

// RepoGC is one peer's kubo garbage collection.
type RepoGC struct {
	Peer     peer.ID      `json:"peer"`
	Peername string       `json:"peername"`
	Keys     []IPFSRepoGC `json:"keys"`
	Error    string       `json:"error,omitempty"`
}

// GlobalRepoGC is the answer of POST /ipfs/gc: every peer's collection,
// by peer ID.
type GlobalRepoGC struct {
	PeerMap map[string]RepoGC `json:"peer_map"`
}

// Bandwidth is libp2p traffic of one protocol: bytes in all and bytes a
// second now (GET /health/bandwidth).
type Bandwidth struct {
	TotalIn  int64   `json:"total_in"`
	TotalOut int64   `json:"total_out"`
	RateIn   float64 `json:"rate_in"`
	RateOut  float64 `json:"rate_out"`
}

// StateDigest is the answer of GET /state/digest: nothing peer-specific, so
// converged peers give byte-identical answers.
type StateDigest struct {
	Digest string `json:"digest"`
	Pins   uint64 `json:"pins"`
}

// Version is the answer of GET /version.
type VersionInfo struct {
	Version string `json:"version"`
}

// Health is a peer's report on itself (GET /health).
type Health struct {
	// Healthy is false when the peer cannot do its job: kubo is not
	// reachable.
	Healthy bool            `json:"healthy"`
	Kubo    ComponentHealth `json:"kubo"`
	// Pinset is not OK when pinset changes this peer acknowledged could
	// not be stored and were quarantined (Error says how many, why, and
	// where they are kept).
	Pinset ComponentHealth `json:"pinset"`
	// Store is the pinset store's size: what it holds on disk, the
	// history's height (deltas on the longest branch) and the live pins.
	Store StoreHealth `json:"store"`
	// Audits is not OK when peers this peer audited failed their last
	// audit (Error names them); each cluster peer's Audit says more.
	Audits ComponentHealth `json:"audits"`
	// Alone is true when no cluster peer is connected although the peer
	// has someone to try; it keeps trying.
	Alone          bool         `json:"alone"`
	ConnectedPeers int          `json:"connected_peers"`
	ClusterPeers   []PeerHealth `json:"cluster_peers"`
}

// StoreHealth is the pinset store's size (docs/operations.md).
type StoreHealth struct {
	Bytes  int64  `json:"bytes"` // -1: unknown
	Height uint64 `json:"height"`
	Pins   int    `json:"pins"`
	// Epoch is the pinset's current epoch (ADR 9), EpochSince when this
	// peer switched to it (absent: it started in it), LastDrop when it
	// last dropped an old one since it started.
	Epoch      uint64     `json:"epoch"`
	EpochSince *time.Time `json:"epoch_since,omitempty"`
	LastDrop   *time.Time `json:"last_drop,omitempty"`
	// History and Live are the current epoch's set entries at the last
	// count (state.compact_check): history (elements ever added and
	// tombstones) against live entries; -1: not counted yet.
	History int `json:"history"`
	Live    int `json:"live"`
}

// ComponentHealth says whether a component answers.
type ComponentHealth struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// PeerHealth is what one peer knows of another.
type PeerHealth struct {
	ID        peer.ID   `json:"id"`
	Peername  string    `json:"peername"`
	Role      string    `json:"role,omitempty"`
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen"`
	// Audit is what this peer's audits of it found (peers ls's line).
	Audit string `json:"audit,omitempty"`
}

// Epoch is the record a writer signs when it starts a new epoch of the
// pinset (docs/adr/0009-compaction.md): the new epoch's heads once the
// copy of the live pinset was in, and what was copied.
type Epoch struct {
	Epoch  uint64      `json:"epoch"`
	Heads  []Cid       `json:"heads"`
	Digest StateDigest `json:"digest"`
	Made   time.Time   `json:"made"`
	By     peer.ID     `json:"by"`
	// Marks say what the copy covered: for each origin, the highest Seq
	// of its records the maker had merged, with everything before it
	// (kept from the epoch before when higher). A record of the old epoch
	// at or below its origin's mark is reflected in the copy, or was
	// removed or replaced before it; only later ones are carried over.
	// Sorted by origin.
	Marks []Mark `json:"marks,omitempty"`
}

// Mark is one origin's entry in an epoch record's marks.
type Mark struct {
	Origin peer.ID `json:"origin"`
	Seq    uint64  `json:"seq"`
}

// MaxEpochHeads bounds the heads an epoch record may name; MaxEpochMarks
// the origins (writer peers that ever wrote) its marks may list.
const (
	MaxEpochHeads = 64
	MaxEpochMarks = 1024
)

// Validate checks an epoch record received from the network.
func (e *Epoch) Validate() error {
	switch {
	case e.Epoch == 0:
		return errors.New("epoch record: epoch 0 has no record")
	case len(e.Heads) > MaxEpochHeads:
		return fmt.Errorf("epoch record: %d heads, at most %d", len(e.Heads), MaxEpochHeads)
	case len(e.Heads) == 0 && e.Digest.Pins > 0:
		return fmt.Errorf("epoch record: %d pins copied and no heads", e.Digest.Pins)
	case e.By.Validate() != nil:
		return fmt.Errorf("epoch record: maker %q is not a peer ID", e.By)
	case len(e.Marks) > MaxEpochMarks:
		return fmt.Errorf("epoch record: %d marks, at most %d", len(e.Marks), MaxEpochMarks)
	}
	for i, m := range e.Marks {
		if m.Origin.Validate() != nil {
			return fmt.Errorf("epoch record: mark of %q, not a peer ID", m.Origin)
		}
		if i > 0 && e.Marks[i-1].Origin >= m.Origin {
			return errors.New("epoch record: marks not sorted by origin, or one listed twice")
		}
	}
	for _, h := range e.Heads {
		if !h.Defined() {
			return errors.New("epoch record: an undefined head")
		}
	}
	return nil
}
