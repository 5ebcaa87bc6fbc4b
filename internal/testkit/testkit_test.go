package testkit

import (
	"testing"
	"time"
)

func TestCidIsStableAndDistinct(t *testing.T) {
	first, again := Cid(1), Cid(1)
	if !first.Equals(again.Cid) || first.Equals(Cid(2).Cid) {
		t.Fatal("Cid must be deterministic and distinct per index")
	}
	// The same as crdtstate's tests have always used for pin 0.
	if got := Cid(0).String(); got[:4] != "bafk" {
		t.Fatalf("Cid(0) = %s, want a CIDv1 raw", got)
	}
}

func TestWaitForReturnsOnceTrue(t *testing.T) {
	n := 0
	WaitFor(t, time.Second, "three calls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times", n)
	}
}
