package audit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/internal/testkit"
)

// The sampler keeps N items, each of a long stream equally likely.
func TestSamplerIsUniform(t *testing.T) {
	counts := make([]int, 10)
	for range 20000 {
		s := Sampler[int]{N: 2}
		for i := range 10 {
			s.Offer(i)
		}
		if len(s.Items) != 2 {
			t.Fatalf("%d items kept, want 2", len(s.Items))
		}
		for _, x := range s.Items {
			counts[x]++
		}
	}
	for i, n := range counts { // each expected 4000
		if n < 3400 || n > 4600 {
			t.Fatalf("item %d sampled %d times of 40000, want about 4000: %v", i, n, counts)
		}
	}
}

// Verdicts count passes and failures, a pass ends a failing streak, and
// the table is bounded.
func TestVerdicts(t *testing.T) {
	v := &Verdicts{Max: 3}
	a := testkit.PeerID(t, 1)
	t0 := time.Now()
	v.Add(a, t0, nil)
	v.Add(a, t0.Add(time.Minute), errors.New("block was not found locally"))
	v.Add(a, t0.Add(2*time.Minute), errors.New("block was not found locally"))
	r, _ := v.Get(a)
	if r.Passed != 1 || r.Failed != 2 || r.Failing != 2 || !strings.Contains(r.String(), "FAILING (2 in a row") {
		t.Fatalf("after a pass and two failures: %+v %q", r, r.String())
	}
	v.Add(a, t0.Add(3*time.Minute), nil)
	if r, _ := v.Get(a); r.Failing != 0 || !strings.HasPrefix(r.String(), "verified") {
		t.Fatalf("after a pass again: %+v %q", r, r.String())
	}
	for i := 2; i <= 5; i++ {
		v.Add(testkit.PeerID(t, i), t0.Add(time.Duration(i)*time.Hour), nil)
	}
	if _, ok := v.Get(a); ok {
		t.Fatal("the peer audited longest ago was kept past Max")
	}
}
