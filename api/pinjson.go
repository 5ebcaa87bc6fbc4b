package api

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AppendJSON appends p as encoding/json encodes it (the same bytes, without
// the Encoder's newline), without reflection: the REST API answers every pin
// request and lists whole pinsets with it. TestPinAppendJSON compares the
// two on random pins.
func (p *Pin) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"cid":`...)
	b = p.Cid.appendJSON(b)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, p.Type.String())
	b = append(b, `,"allocations":`...)
	b = appendPeers(b, p.Allocations)
	b = append(b, `,"max_depth":`...)
	b = strconv.AppendInt(b, int64(p.MaxDepth), 10)
	b = append(b, `,"reference":`...)
	b = p.Reference.appendJSON(b)
	b = append(b, `,"timestamp":`...)
	if b, err = appendTime(b, p.Timestamp); err != nil {
		return nil, err
	}
	o := &p.PinOptions
	b = append(b, `,"replication_factor_min":`...)
	b = strconv.AppendInt(b, int64(o.ReplicationFactorMin), 10)
	b = append(b, `,"replication_factor_max":`...)
	b = strconv.AppendInt(b, int64(o.ReplicationFactorMax), 10)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, o.Name)
	b = append(b, `,"mode":`...)
	b = appendJSONString(b, o.Mode.String())
	b = append(b, `,"shard_size":`...)
	b = strconv.AppendUint(b, o.ShardSize, 10)
	if len(o.UserAllocations) > 0 {
		b = append(b, `,"user_allocations":`...)
		b = appendPeers(b, o.UserAllocations)
	}
	b = append(b, `,"expire_at":`...)
	if b, err = appendTime(b, o.ExpireAt); err != nil {
		return nil, err
	}
	b = append(b, `,"metadata":`...)
	if o.Metadata == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		keys := make([]string, 0, len(o.Metadata))
		for k := range o.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, o.Metadata[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"pin_update":`...)
	b = o.PinUpdate.appendJSON(b)
	b = append(b, `,"origins":`...)
	if o.Origins == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range o.Origins {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, a.String())
		}
		b = append(b, ']')
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, p.Version, 10)
	if p.Writer != "" {
		b = append(b, `,"writer":`...)
		b = appendJSONString(b, p.Writer)
	}
	return append(b, '}'), nil
}

func (c Cid) appendJSON(b []byte) []byte {
	if !c.Defined() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = append(b, c.String()...)
	return append(b, '"')
}

func appendPeers(b []byte, ids []peer.ID) []byte {
	if ids == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id.String())
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	j, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters included); printable ASCII needing no escape
// is copied as it is.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(s) // a string always encodes
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
