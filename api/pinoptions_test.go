package api

import (
	"testing"
	"time"
)

func TestDefaultReplication(t *testing.T) {
	for _, tc := range []struct{ min, max, wantMin, wantMax int }{
		{0, 0, 2, 3},    // neither set: the cluster's
		{2, 0, 2, 2},    // the maximum from the minimum
		{0, 5, 1, 5},    // the minimum is 1
		{0, -1, -1, -1}, // every peer
		{1, 4, 1, 4},    // both set: kept
	} {
		p := Pin{PinOptions: PinOptions{ReplicationFactorMin: tc.min, ReplicationFactorMax: tc.max}}
		p.DefaultReplication(2, 3)
		if p.ReplicationFactorMin != tc.wantMin || p.ReplicationFactorMax != tc.wantMax {
			t.Errorf("(%d, %d) became (%d, %d), want (%d, %d)", tc.min, tc.max,
				p.ReplicationFactorMin, p.ReplicationFactorMax, tc.wantMin, tc.wantMax)
		}
	}
}

func TestInheritKeepsWhatIsSet(t *testing.T) {
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	from := &Pin{PinOptions: PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 3, Name: "old",
		ExpireAt: exp, Metadata: map[string]string{"k": "v"}}}
	p := Pin{PinOptions: PinOptions{Name: "new"}}
	p.Inherit(from)
	if p.Name != "new" || p.ReplicationFactorMin != 2 || p.ReplicationFactorMax != 3 || !p.ExpireAt.Equal(exp) || p.Metadata["k"] != "v" {
		t.Fatalf("inherited %+v", p.PinOptions)
	}
	q := Pin{PinOptions: PinOptions{ReplicationFactorMax: 1, Metadata: map[string]string{"a": "b"}}}
	q.Inherit(from)
	if q.ReplicationFactorMax != 1 || q.ReplicationFactorMin != 0 || q.Metadata["k"] != "" || q.Name != "old" {
		t.Fatalf("a set factor or metadata was overwritten: %+v", q.PinOptions)
	}
}
