package api

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParsePinOptions: any query either parses into options that survive
// a round trip through PinOptionsQuery, or is refused with an error — it
// never panics.
func FuzzParsePinOptions(f *testing.F) {
	for _, s := range []string{
		"", "name=x&replication-min=2&replication-max=3",
		"replication=-1&mode=direct&expire-in=1h&meta-a=b&origins=/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
		"user-allocations=12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA,bad", "replication-min=9999999999999999999",
		"expire-at=2026-01-01T00:00:00Z&pin-update=QmSSAsUXhn66gztCB3vSPWjRaZYbMxpjSKgAoLFUYSSuCZ", "mode=%ff", "shard-size=-1",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		o, err := ParsePinOptions(q, now)
		if err != nil {
			return
		}
		again, err := ParsePinOptions(PinOptionsQuery(o), now)
		if err != nil {
			t.Fatalf("options parsed from %q do not parse back: %v", raw, err)
		}
		if again.Name != o.Name || again.ReplicationFactorMin != o.ReplicationFactorMin || again.ReplicationFactorMax != o.ReplicationFactorMax {
			t.Fatalf("round trip of %q: %+v → %+v", raw, o, again)
		}
	})
}
