package trust

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Why an envelope is refused.
var (
	ErrUnsigned     = errors.New("not a signed envelope")
	ErrWrongCluster = errors.New("envelope for another cluster")
	ErrUnknownKey   = errors.New("signed by a key that is not a write key of this cluster")
	ErrBadSignature = errors.New("bad signature")
	ErrReplay       = errors.New("replayed envelope")
)

// Domain separation: a signature made for one purpose never verifies for
// another.
const (
	headsDomain   = "pinring/heads/v1\n"
	endorseDomain = "pinring/endorse/v1\n"
	epochDomain   = "pinring/epoch/v1\n"
)

// Envelope is a head announcement as it travels: go-ds-crdt's broadcast
// payload, the cluster it is for, a sequence number (unix nanoseconds at
// signing, strictly increasing per origin), the peer that made it, and the
// write key that signed all of that.
type Envelope struct {
	Cluster string
	Payload []byte
	Seq     uint64
	Origin  string // the peer ID (bytes) of the peer that sealed it
	Key     PublicKey
}

const (
	eCluster = 1
	ePayload = 2
	eSeq     = 3
	eOrigin  = 4
	eKey     = 5
	eSig     = 6 // always last: the signature covers every byte before it
)

func (e Envelope) signedBytes() []byte {
	b := make([]byte, 0, len(e.Payload)+128)
	b = appendField(b, eCluster, []byte(e.Cluster))
	b = appendField(b, ePayload, e.Payload)
	b = protowire.AppendTag(b, eSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, e.Seq)
	b = appendField(b, eOrigin, []byte(e.Origin))
	return appendField(b, eKey, e.Key.bytes())
}

// Signer seals this peer's announcements with its write key.
type Signer struct {
	key     *WriteKey
	cluster string
	origin  string
	now     func() time.Time

	mu   sync.Mutex
	last uint64
}

// NewSigner seals for cluster, as origin (a peer ID), with key.
func NewSigner(key *WriteKey, cluster, origin string) *Signer {
	return &Signer{key: key, cluster: cluster, origin: origin, now: time.Now}
}

// Origin is the peer ID its envelopes name as their origin.
func (s *Signer) Origin() string { return s.origin }

// Key is the signer's public key.
func (s *Signer) Key() PublicKey { return s.key.Public() }

// Seal wraps payload in a signed envelope.
func (s *Signer) Seal(payload []byte) []byte { return s.seal(headsDomain, payload) }

// SealEpoch wraps an epoch record (docs/adr/0009-compaction.md) in a
// signed envelope that only CheckEpoch accepts.
func (s *Signer) SealEpoch(record []byte) []byte { return s.seal(epochDomain, record) }

func (s *Signer) seal(domain string, payload []byte) []byte {
	s.mu.Lock()
	seq := max(s.last+1, uint64(s.now().UnixNano()))
	s.last = seq
	s.mu.Unlock()
	e := Envelope{Cluster: s.cluster, Payload: payload, Seq: seq, Origin: s.origin, Key: s.key.Public()}
	b := e.signedBytes()
	sig := s.key.Sign(append([]byte(domain), b...))
	return appendField(b, eSig, sig)
}

// parseEnvelope splits b into its fields and the bytes the signature covers.
func parseEnvelope(b []byte) (e Envelope, signed, sig []byte, err error) {
	rest := b
	var keyBytes []byte
	for len(rest) > 0 {
		off := len(b) - len(rest)
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return e, nil, nil, ErrUnsigned
		}
		rest = rest[n:]
		if typ == protowire.VarintType && num == eSeq {
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return e, nil, nil, ErrUnsigned
			}
			e.Seq, rest = v, rest[n:]
			continue
		}
		if typ != protowire.BytesType {
			return e, nil, nil, ErrUnsigned
		}
		v, n := protowire.ConsumeBytes(rest)
		if n < 0 {
			return e, nil, nil, ErrUnsigned
		}
		rest = rest[n:]
		switch num {
		case eCluster:
			e.Cluster = string(v)
		case ePayload:
			e.Payload = v
		case eOrigin:
			e.Origin = string(v)
		case eKey:
			keyBytes = v
		case eSig:
			if len(rest) != 0 {
				return e, nil, nil, fmt.Errorf("%w: bytes after the signature", ErrUnsigned)
			}
			signed, sig = b[:off], v
		}
	}
	if sig == nil {
		return e, nil, nil, ErrUnsigned
	}
	k, err := publicKeyFromBytes(keyBytes)
	if err != nil {
		return e, nil, nil, fmt.Errorf("%w: %v", ErrUnsigned, err)
	}
	e.Key = k
	return e, signed, sig, nil
}

// Verifier checks envelopes for one cluster and remembers, per origin and
// key, the newest sequence number seen, to refuse replays. It is safe for
// concurrent use.
type Verifier struct {
	cluster string
	keys    KeySet

	// Now is the clock envelopes' sequence numbers are compared with;
	// nil: time.Now.
	Now func() time.Time

	mu   sync.Mutex
	last map[string]uint64
}

// MaxFuture is how far ahead of this peer's clock an envelope's sequence
// number (its writer's clock) may be. Beyond it the envelope is refused
// and not remembered: remembering it would refuse every later envelope of
// that writer, once its clock is right, as a replay.
const MaxFuture = time.Hour

// ErrFuture: the envelope is dated more than MaxFuture ahead.
var ErrFuture = errors.New("dated in the future")

// NewVerifier accepts envelopes for cluster signed by one of keys.
func NewVerifier(cluster string, keys KeySet) *Verifier {
	return &Verifier{cluster: cluster, keys: keys, last: map[string]uint64{}}
}

// Keys is the accepted key set.
func (v *Verifier) Keys() KeySet { return v.keys }

// Check verifies b and returns the envelope. With replay set it also
// refuses an envelope that is not newer than the last one accepted from the
// same origin and key, and records it as the newest.
func (v *Verifier) Check(b []byte, replay bool) (Envelope, error) {
	return v.check(headsDomain, b, replay)
}

// CheckEpoch verifies an envelope made by SealEpoch (no replay check: a
// peer repeats its epoch's record).
func (v *Verifier) CheckEpoch(b []byte) (Envelope, error) { return v.check(epochDomain, b, false) }

func (v *Verifier) check(domain string, b []byte, replay bool) (Envelope, error) {
	e, signed, sig, err := parseEnvelope(b)
	if err != nil {
		return Envelope{}, err
	}
	if e.Cluster != v.cluster {
		return e, fmt.Errorf("%w: %q, not %q", ErrWrongCluster, e.Cluster, v.cluster)
	}
	if !v.keys.Has(e.Key) {
		return e, fmt.Errorf("%w: %s", ErrUnknownKey, e.Key)
	}
	if !e.Key.Verify(append([]byte(domain), signed...), sig) {
		return e, ErrBadSignature
	}
	if replay {
		now := time.Now
		if v.Now != nil {
			now = v.Now
		}
		if ahead := time.Duration(e.Seq - uint64(now().UnixNano())); e.Seq > uint64(now().UnixNano()) && ahead > MaxFuture {
			return e, fmt.Errorf("%w: %s ahead of this peer's clock (writer %s's clock is wrong, or this one's)", ErrFuture, ahead.Round(time.Second), e.Origin)
		}
		id := e.Origin + "\x00" + e.Key.String()
		v.mu.Lock()
		defer v.mu.Unlock()
		if e.Seq <= v.last[id] {
			return e, fmt.Errorf("%w: sequence %d, already at %d", ErrReplay, e.Seq, v.last[id])
		}
		v.last[id] = e.Seq
	}
	return e, nil
}

// Endorse proves that the holder of k runs the peer peerID of cluster:
// other peers accept that peer as one that may write (and so repair and
// expire pins).
func (k *WriteKey) Endorse(cluster, peerID string) []byte {
	return k.Sign(endorsement(cluster, peerID))
}

func endorsement(cluster, peerID string) []byte {
	return appendField(appendField([]byte(endorseDomain), 1, []byte(cluster)), 2, []byte(peerID))
}

// CheckEndorsement reports whether sig, made by key, endorses peerID in
// cluster and key is one of the set.
func (ks KeySet) CheckEndorsement(cluster, peerID string, key PublicKey, sig []byte) bool {
	return ks.Has(key) && key.Verify(endorsement(cluster, peerID), sig)
}
