package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzPinJSON: any JSON body either decodes into a valid Pin that encodes
// and decodes to the same pin, or is refused — never a panic; a decoded
// pin's AppendJSON is encoding/json's encoding.
func FuzzPinJSON(f *testing.F) {
	for _, s := range []string{
		`{"cid":"QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ","type":"pin","name":"x","replication_factor_min":-1,"replication_factor_max":-1}`,
		`{"cid":{"/":"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"},"type":1,"mode":"direct","metadata":{"a":"b"}}`,
		`{"cid":"x"}`, `{"type":8,"allocations":["nope"]}`, `[]`, `null`, `{"expire_at":"not a time"}`,
		`{"origins":["/ip4/1.2.3.4/tcp/1"],"user_allocations":["12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Pin
		if err := json.Unmarshal(b, &p); err != nil {
			return
		}
		want, err1 := json.Marshal(&p)
		got, err2 := p.AppendJSON(nil)
		if (err1 == nil) != (err2 == nil) || err1 == nil && !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON differs from encoding/json:\n got %s (%v)\nwant %s (%v)", got, err2, want, err1)
		}
		if p.Validate() != nil {
			return // refused before it enters the pinset
		}
		out, err := json.Marshal(&p)
		if err != nil {
			t.Fatalf("a decoded pin does not encode: %v (%+v)", err, p)
		}
		var back Pin
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("a pin's own JSON does not decode: %v\n%s", err, out)
		}
		if !back.Equal(&p) {
			t.Fatalf("round trip changed the pin:\n%+v\n%+v", p, back)
		}
	})
}
