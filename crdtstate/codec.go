package crdtstate

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pinring/pinring/api"
)

// FormatVersion is the version of the binary Pin encoding written by this
// code. Fields unknown to it are kept verbatim (api.Pin.Unknown).
const FormatVersion = 1

// Field numbers of the Pin encoding (protobuf wire format). Never reuse one.
const (
	fVersion         = 1
	fCid             = 2
	fType            = 3
	fAllocations     = 4
	fMaxDepth        = 5
	fReference       = 6
	fTimestamp       = 7
	fRmin            = 8
	fRmax            = 9
	fName            = 10
	fMode            = 11
	fShardSize       = 12
	fUserAllocations = 13
	fExpireAt        = 14
	fMetadata        = 15
	fPinUpdate       = 16
	fOrigins         = 17
	fRecordVersion   = 18
	fWriter          = 19
	fOrigin          = 20
	fSeq             = 21
)

// ErrCorrupt is returned for bytes that are not a Pin record.
var ErrCorrupt = errors.New("corrupt pin record")

// EncodePin writes p in the versioned binary form.
func EncodePin(p *api.Pin) []byte {
	b := make([]byte, 0, 128)
	b = protowire.AppendTag(b, fVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, FormatVersion)
	b = appendBytes(b, fCid, p.Cid.Bytes())
	b = appendVarint(b, fType, uint64(p.Type))
	for _, a := range p.Allocations {
		b = appendBytes(b, fAllocations, []byte(a))
	}
	b = appendVarint(b, fMaxDepth, protowire.EncodeZigZag(int64(p.MaxDepth)))
	if p.Reference.Defined() {
		b = appendBytes(b, fReference, p.Reference.Bytes())
	}
	b = appendTime(b, fTimestamp, p.Timestamp)
	b = appendVarint(b, fRmin, protowire.EncodeZigZag(int64(p.ReplicationFactorMin)))
	b = appendVarint(b, fRmax, protowire.EncodeZigZag(int64(p.ReplicationFactorMax)))
	if p.Name != "" {
		b = appendBytes(b, fName, []byte(p.Name))
	}
	b = appendVarint(b, fMode, uint64(p.Mode))
	b = appendVarint(b, fShardSize, p.ShardSize)
	for _, a := range p.UserAllocations {
		b = appendBytes(b, fUserAllocations, []byte(a))
	}
	b = appendTime(b, fExpireAt, p.ExpireAt)
	keys := make([]string, 0, len(p.Metadata))
	for k := range p.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic bytes: equal pins encode equally
	for _, k := range keys {
		var kv []byte
		kv = appendBytes(kv, 1, []byte(k))
		kv = appendBytes(kv, 2, []byte(p.Metadata[k]))
		b = appendBytes(b, fMetadata, kv)
	}
	if p.PinUpdate.Defined() {
		b = appendBytes(b, fPinUpdate, p.PinUpdate.Bytes())
	}
	for _, o := range p.Origins {
		b = appendBytes(b, fOrigins, o.Bytes())
	}
	b = appendVarint(b, fRecordVersion, p.Version)
	if p.Writer != "" {
		b = appendBytes(b, fWriter, []byte(p.Writer))
	}
	if p.Origin != "" {
		b = appendBytes(b, fOrigin, []byte(p.Origin))
	}
	b = appendVarint(b, fSeq, p.Seq)
	return append(b, p.Unknown...)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return appendVarint(b, num, protowire.EncodeZigZag(t.UnixNano()))
}

// DecodePin reads a record written by EncodePin, by this or a later version.
func DecodePin(b []byte) (*api.Pin, error) {
	p := &api.Pin{Type: api.DataType}
	sawVersion := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		field := b
		b = b[n:]
		var (
			raw []byte
			val uint64
		)
		switch typ {
		case protowire.VarintType:
			val, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: field %d: %v", ErrCorrupt, num, protowire.ParseError(n))
		}
		b = b[n:]
		field = field[:len(field)-len(b)]
		if err := decodeField(p, num, typ, val, raw, field, &sawVersion); err != nil {
			return nil, err
		}
	}
	if !sawVersion || !p.Cid.Defined() {
		return nil, fmt.Errorf("%w: missing version or CID", ErrCorrupt)
	}
	return p, nil
}

// bytesFields are the known fields of wire type bytes; the other known
// fields are varints.
var bytesFields = [fSeq + 1]bool{fCid: true, fAllocations: true, fReference: true, fName: true,
	fUserAllocations: true, fMetadata: true, fPinUpdate: true, fOrigins: true, fWriter: true, fOrigin: true}

func decodeField(p *api.Pin, num protowire.Number, typ protowire.Type, val uint64, raw, field []byte, sawVersion *bool) error {
	known := num >= fVersion && num <= fSeq
	if known && (bytesFields[num] && typ != protowire.BytesType || !bytesFields[num] && typ != protowire.VarintType) {
		return fmt.Errorf("%w: field %d has wire type %d", ErrCorrupt, num, typ)
	}
	var err error
	switch num {
	case fVersion:
		*sawVersion = true
	case fCid:
		p.Cid, err = castCid(raw)
	case fType:
		p.Type = api.PinType(val)
	case fAllocations:
		p.Allocations = append(p.Allocations, peer.ID(raw))
	case fMaxDepth:
		p.MaxDepth = int(protowire.DecodeZigZag(val))
	case fReference:
		p.Reference, err = castCid(raw)
	case fTimestamp:
		p.Timestamp = time.Unix(0, protowire.DecodeZigZag(val)).UTC()
	case fRmin:
		p.ReplicationFactorMin = int(protowire.DecodeZigZag(val))
	case fRmax:
		p.ReplicationFactorMax = int(protowire.DecodeZigZag(val))
	case fName:
		p.Name = string(raw)
	case fMode:
		p.Mode = api.PinMode(val)
	case fShardSize:
		p.ShardSize = val
	case fUserAllocations:
		p.UserAllocations = append(p.UserAllocations, peer.ID(raw))
	case fExpireAt:
		p.ExpireAt = time.Unix(0, protowire.DecodeZigZag(val)).UTC()
	case fMetadata:
		k, v, ok := decodeKV(raw)
		if !ok {
			return fmt.Errorf("%w: metadata entry", ErrCorrupt)
		}
		if p.Metadata == nil {
			p.Metadata = make(map[string]string)
		}
		p.Metadata[k] = v
	case fPinUpdate:
		p.PinUpdate, err = castCid(raw)
	case fOrigins:
		var m ma.Multiaddr
		m, err = ma.NewMultiaddrBytes(raw)
		p.Origins = append(p.Origins, m)
	case fRecordVersion:
		p.Version = val
	case fWriter:
		p.Writer = string(raw)
	case fOrigin:
		p.Origin = peer.ID(raw)
	case fSeq:
		p.Seq = val
	default:
		p.Unknown = append(p.Unknown, field...)
	}
	if err != nil {
		return fmt.Errorf("%w: field %d: %v", ErrCorrupt, num, err)
	}
	return nil
}

func castCid(b []byte) (api.Cid, error) {
	c, err := cid.Cast(b)
	return api.NewCid(c), err
}

func decodeKV(b []byte) (k, v string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return "", "", false
		}
		b = b[n:]
		raw, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return "", "", false
		}
		b = b[m:]
		switch num {
		case 1:
			k = string(raw)
		case 2:
			v = string(raw)
		}
	}
	return k, v, true
}
