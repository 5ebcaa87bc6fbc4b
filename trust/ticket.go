package trust

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multibase"
	"google.golang.org/protobuf/encoding/protowire"
)

// ErrBadTicket is wrapped by every ticket parsing error.
var ErrBadTicket = errors.New("bad ticket")

// SecretSize is the length of a private-network secret (a libp2p PSK).
const SecretSize = 32

// Ticket is a read key: what a peer needs to follow a cluster. Holding one
// lets a peer connect (the secret), find peers (bootstrap) and verify what
// it receives (the write public keys); it never lets it write.
type Ticket struct {
	Cluster   string
	WriteKeys []PublicKey
	Bootstrap []ma.Multiaddr
	// Secret is the private-network secret; nil for an open network.
	Secret []byte
}

// The binary form: magic, format version, protobuf-wire fields, and the
// first 4 bytes of the SHA-256 of everything before them; written as
// lower-case base32 multibase ("b…") so it survives copy, paste and
// case-folding.
var ticketMagic = []byte("PRTK")

const (
	ticketVersion = 1
	checksumSize  = 4

	tCluster   = 1
	tWriteKey  = 2
	tBootstrap = 3
	tSecret    = 4
)

// String encodes the ticket.
func (t Ticket) String() string {
	b := append(bytes.Clone(ticketMagic), ticketVersion)
	b = appendField(b, tCluster, []byte(t.Cluster))
	for _, k := range t.WriteKeys {
		b = appendField(b, tWriteKey, k.bytes())
	}
	for _, a := range t.Bootstrap {
		b = appendField(b, tBootstrap, a.Bytes())
	}
	if len(t.Secret) > 0 {
		b = appendField(b, tSecret, t.Secret)
	}
	sum := sha256.Sum256(b)
	b = append(b, sum[:checksumSize]...)
	s, _ := multibase.Encode(multibase.Base32, b)
	return s
}

func appendField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// ParseTicket reads a ticket, rejecting a truncated, corrupted or foreign
// string with an error that says which.
func ParseTicket(s string) (Ticket, error) {
	s = strings.Join(strings.Fields(s), "") // line breaks from e-mail or chat
	if s == "" {
		return Ticket{}, fmt.Errorf("%w: the ticket is empty", ErrBadTicket)
	}
	enc, b, err := multibase.Decode(s)
	if err != nil || enc != multibase.Base32 {
		if strings.HasPrefix(s, "b") || strings.HasPrefix(s, "B") {
			return Ticket{}, fmt.Errorf("%w: it does not decode; it is truncated or mistyped", ErrBadTicket)
		}
		return Ticket{}, fmt.Errorf("%w: not a Pinring ticket (a ticket starts with \"b\" and is base32)", ErrBadTicket)
	}
	if len(b) < len(ticketMagic) || !bytes.Equal(b[:len(ticketMagic)], ticketMagic) {
		return Ticket{}, fmt.Errorf("%w: not a Pinring ticket (foreign content)", ErrBadTicket)
	}
	if len(b) < len(ticketMagic)+1+checksumSize {
		return Ticket{}, fmt.Errorf("%w: the ticket is truncated", ErrBadTicket)
	}
	body, sum := b[:len(b)-checksumSize], b[len(b)-checksumSize:]
	want := sha256.Sum256(body)
	if !bytes.Equal(sum, want[:checksumSize]) {
		return Ticket{}, fmt.Errorf("%w: checksum mismatch: the ticket is truncated or corrupted; copy it again whole", ErrBadTicket)
	}
	if v := body[len(ticketMagic)]; v > ticketVersion {
		return Ticket{}, fmt.Errorf("%w: ticket format %d is newer than this program knows (%d); upgrade Pinring", ErrBadTicket, v, ticketVersion)
	}
	var t Ticket
	rest := body[len(ticketMagic)+1:]
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return Ticket{}, fmt.Errorf("%w: malformed field", ErrBadTicket)
		}
		rest = rest[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, rest)
			if n < 0 {
				return Ticket{}, fmt.Errorf("%w: malformed field %d", ErrBadTicket, num)
			}
			rest = rest[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(rest)
		if n < 0 {
			return Ticket{}, fmt.Errorf("%w: malformed field %d", ErrBadTicket, num)
		}
		rest = rest[n:]
		switch num {
		case tCluster:
			t.Cluster = string(v)
		case tWriteKey:
			k, err := publicKeyFromBytes(v)
			if err != nil {
				return Ticket{}, fmt.Errorf("%w: %v", ErrBadTicket, err)
			}
			t.WriteKeys = append(t.WriteKeys, k)
		case tBootstrap:
			a, err := ma.NewMultiaddrBytes(v)
			if err != nil {
				return Ticket{}, fmt.Errorf("%w: bootstrap address: %v", ErrBadTicket, err)
			}
			t.Bootstrap = append(t.Bootstrap, a)
		case tSecret:
			if len(v) != SecretSize {
				return Ticket{}, fmt.Errorf("%w: network secret of %d bytes, want %d", ErrBadTicket, len(v), SecretSize)
			}
			t.Secret = bytes.Clone(v)
		default:
			// A field from a later version: skipped.
		}
	}
	if t.Cluster == "" {
		return Ticket{}, fmt.Errorf("%w: it names no cluster", ErrBadTicket)
	}
	if len(t.WriteKeys) == 0 {
		return Ticket{}, fmt.Errorf("%w: it holds no write public key, so nothing could be verified", ErrBadTicket)
	}
	return t, nil
}
