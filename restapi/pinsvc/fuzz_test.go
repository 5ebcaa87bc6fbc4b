package pinsvc

import (
	"bytes"
	"net/url"
	"testing"
)

// FuzzDecodePin: a Pin body is accepted with a valid CID, or refused with
// an error — never a panic.
func FuzzDecodePin(f *testing.F) {
	for _, s := range []string{
		`{"cid":"QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ","name":"x","origins":["/ip4/1.2.3.4/tcp/4001"],"meta":{"a":"b"}}`,
		`{"cid":""}`, `{"cid":"QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ","meta":{"pinsvc:x":"y"}}`, `{} {}`, `{"origins":["x"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, c, _, err := DecodePin(bytes.NewReader(b))
		if err == nil && !c.Defined() {
			t.Fatalf("accepted %q without a CID", b)
		}
	})
}

// FuzzParseQuery: list filters parse or are refused; a parsed limit is in
// range — never a panic.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=1000&status=queued,pinned&match=ipartial&name=x",
		"before=2026-01-01T00:00:00Z&after=2025-01-01T00:00:00.5Z", "meta=%7B%22a%22%3A%22b%22%7D",
		"cid=QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ,bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "limit=-5", "status=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := ParseQuery(q)
		if err == nil && (got.Limit < 1 || got.Limit > maxLimit || len(got.Status) == 0) {
			t.Fatalf("%q parsed into %+v", raw, got)
		}
	})
}

// FuzzRequestID: request IDs that parse give back the same ID.
func FuzzRequestID(f *testing.F) {
	f.Add("bafybeigiu4zvugdsbtxzy7iws53hgknjlfpm5yk5gboe6uls76zfrnggtm-abc")
	f.Add("-")
	f.Add("QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ-x-y")
	f.Fuzz(func(t *testing.T, id string) {
		c, tok, err := ParseRequestID(id)
		if err != nil {
			return
		}
		if !c.Defined() || tok == "" {
			t.Fatalf("%q parsed into %v %q", id, c, tok)
		}
	})
}
