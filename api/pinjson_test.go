package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
)

// Strings that encoding/json escapes, or not.
var jsonStrings = []string{"", "plain", "a \"quoted\" \\ name", "<script>&amp;</script>", "tab\there\nnewline\x00\x1f",
	"ünïcødé ✓ 🎉", "a<b", "c>d", "e&f", "line\u2028sep\u2029", "bad utf-8 \xff\xfe", "~\x7f"}

func randomPin(t testing.TB, r *rand.Rand) *Pin {
	str := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	h, err := mh.Sum(fmt.Appendf(nil, "%d", r.Int64()), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	p := &Pin{Cid: NewCid(cid.NewCidV1(cid.Raw, h)), Type: PinType(r.IntN(6)), MaxDepth: r.IntN(3) - 1,
		Version: r.Uint64(), PinOptions: PinOptions{ReplicationFactorMin: r.IntN(5) - 1, ReplicationFactorMax: r.IntN(5) - 1,
			Name: str(), Mode: PinMode(r.IntN(2)), ShardSize: r.Uint64N(1 << 40)}}
	if r.IntN(2) == 0 {
		p.Reference = NewCid(cid.NewCidV0(h))
		p.PinUpdate = p.Cid
		p.Writer = str()
	}
	switch r.IntN(3) {
	case 0:
		p.Allocations = []peer.ID{}
	case 1:
		p.Allocations = []peer.ID{pid, pid}
		p.UserAllocations = []peer.ID{pid}
	}
	if r.IntN(2) == 0 {
		p.Timestamp = time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(time.FixedZone("x", 3600*(r.IntN(20)-10)))
		p.ExpireAt = time.Unix(r.Int64N(1<<34), 0).UTC()
	}
	switch r.IntN(3) {
	case 0:
		p.Metadata = map[string]string{}
	case 1:
		p.Metadata = map[string]string{str(): str(), "b": str(), "a": str(), "é": ""}
	}
	switch r.IntN(3) {
	case 0:
		p.Origins = []ma.Multiaddr{}
	case 1:
		p.Origins = []ma.Multiaddr{ma.StringCast("/ip4/1.2.3.4/tcp/4001/p2p/" + pid.String()), ma.StringCast("/dns4/a.example/udp/1/quic-v1"), nil}
	}
	return p
}

func TestPinAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		p := randomPin(t, r)
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("pin %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A time encoding/json refuses is refused too.
	p := randomPin(t, r)
	p.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := p.AppendJSON(nil); err == nil {
		t.Error("a timestamp in year 10000 encoded")
	}
}

// IPFS Cluster's clients read a CID that is not set as null and refuse ""
// ("cid too short"); both encoders must write null, and both forms must
// read back as no CID.
func TestUndefinedCidIsNull(t *testing.T) {
	h, _ := mh.Sum([]byte("x"), mh.SHA2_256, -1)
	p := &Pin{Cid: NewCid(cid.NewCidV1(cid.Raw, h)), MaxDepth: -1}
	fast, err := p.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	std, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{fast, std} {
		for _, want := range []string{`"reference":null`, `"pin_update":null`} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s lacks %s", b, want)
			}
		}
	}
	for _, in := range []string{`null`, `""`} {
		c := NewCid(p.Cid.Cid)
		if err := json.Unmarshal([]byte(in), &c); err != nil || c.Defined() {
			t.Errorf("%s read as %v, %v; want no CID", in, c, err)
		}
	}
}
