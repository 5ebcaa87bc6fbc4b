package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

const v0 = "QmQRR9Bimvfu8ZWp8c5k7kjY5GwjtegATvnERifNsoomBj"

func TestCidJSON(t *testing.T) {
	var a, b Cid
	if err := json.Unmarshal([]byte(`"`+v0+`"`), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"/":"`+v0+`"}`), &b); err != nil {
		t.Fatal(err)
	}
	if !a.Equals(b.Cid) || a.String() != v0 {
		t.Fatalf("%s %s", a, b)
	}
	out, _ := json.Marshal(a)
	if string(out) != `"`+v0+`"` {
		t.Fatalf("marshal = %s", out)
	}
	if a.Key() == v0 || a.Key()[:4] != "bafy" {
		t.Fatalf("key %s is not CIDv1 base32", a.Key())
	}
	var bad Cid
	if err := json.Unmarshal([]byte(`"nope"`), &bad); !errors.Is(err, ErrBadCid) {
		t.Fatalf("bad cid: %v", err)
	}
}

func TestPinTypeAndModeJSON(t *testing.T) {
	var pt PinType
	for in, want := range map[string]PinType{`"pin"`: DataType, `"shard-pin"`: ShardType, `1`: DataType, `2`: MetaType} {
		if err := json.Unmarshal([]byte(in), &pt); err != nil || pt != want {
			t.Errorf("%s -> %v, %v", in, pt, err)
		}
	}
	if err := json.Unmarshal([]byte(`"sideways"`), &pt); err == nil {
		t.Error("unknown type accepted")
	}
	var m PinMode
	if err := json.Unmarshal([]byte(`"direct"`), &m); err != nil || m != PinModeDirect {
		t.Errorf("mode %v %v", m, err)
	}
}

func TestStatusFilter(t *testing.T) {
	f, err := ParseStatusFilter("error,queued")
	if err != nil {
		t.Fatal(err)
	}
	for st, want := range map[TrackerStatus]bool{StatusPinError: true, StatusUnpinError: true, StatusPinQueued: true,
		StatusUnpinQueued: true, StatusPinned: false, StatusRemote: false} {
		if f.Match(st) != want {
			t.Errorf("filter %v on %s = %v", f, st, !want)
		}
	}
	if _, err := ParseStatusFilter("pinned,bogus"); err == nil {
		t.Error("bogus status accepted")
	}
	if !(StatusFilter(nil)).Match(StatusRemote) {
		t.Error("empty filter must match everything")
	}
}

// A filtered status keeps only the peers whose status passes, as IPFS
// Cluster's does (its clients check every peer in the map).
func TestGlobalPinInfoKeep(t *testing.T) {
	c, _ := ParseCid(v0)
	mk := func() *GlobalPinInfo {
		var g GlobalPinInfo
		for p, st := range map[peer.ID]TrackerStatus{"a": StatusPinned, "b": StatusPinning, "c": StatusRemote} {
			g.Add(PinInfo{Cid: c, Peer: p, PinInfoShort: PinInfoShort{Status: st}})
		}
		return &g
	}
	f, _ := ParseStatusFilter("pin_queued,pinning,pin_error")
	g := mk()
	if !g.Keep(f) || len(g.PeerMap) != 1 || g.PeerMap[peer.ID("b").String()].Status != StatusPinning {
		t.Fatalf("kept %v", g.PeerMap)
	}
	f, _ = ParseStatusFilter("error")
	if g = mk(); g.Keep(f) {
		t.Fatalf("no peer in error, kept %v", g.PeerMap)
	}
	if g = mk(); !g.Keep(nil) || len(g.PeerMap) != 3 {
		t.Fatalf("no filter kept %v", g.PeerMap)
	}
}

func TestPinValidate(t *testing.T) {
	c, _ := ParseCid(v0)
	for _, tc := range []struct {
		min, max int
		ok       bool
	}{{-1, -1, true}, {1, 3, true}, {2, 2, true}, {3, 2, false}, {0, 1, false}, {-1, 2, false}, {-2, -1, false}} {
		p := Pin{Cid: c, Type: DataType, PinOptions: PinOptions{ReplicationFactorMin: tc.min, ReplicationFactorMax: tc.max}}
		if err := p.Validate(); (err == nil) != tc.ok {
			t.Errorf("min %d max %d: %v", tc.min, tc.max, err)
		}
	}
}

func TestCidForms(t *testing.T) {
	v0, _ := ParseCid("QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ")
	v1, _ := ParseCid(v0.Key())
	if f := v1.Forms(); len(f) != 2 || f[1].String() != v0.String() {
		t.Fatalf("forms of %s: %v", v1, f)
	}
	if f := v0.Forms(); len(f) != 2 || f[1].Key() != v0.Key() || f[1].Version() != 1 {
		t.Fatalf("forms of %s: %v", v0, f)
	}
	raw, _ := ParseCid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if f := raw.Forms(); len(f) != 1 {
		t.Fatalf("a raw CID has no v0 form: %v", f)
	}
}

// BenchmarkPinJSON encodes the answer to a pin request.
func BenchmarkPinJSON(b *testing.B) {
	c, err := ParseCid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if err != nil {
		b.Fatal(err)
	}
	p := Pin{Cid: c, Type: DataType, MaxDepth: -1, Version: 1, Writer: "k51qzi5uqu5dh9ihj4p2v5sl3hxvv27ryx2w0xrsv6jmmqi91t9xp8p9kaipc2",
		PinOptions: PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: "bench"}}
	b.Run("encoding/json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := json.NewEncoder(&buf).Encode(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = p.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
