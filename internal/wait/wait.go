// Package wait holds the tests' one way to wait for a condition without
// sleeping for a fixed time.
package wait

import (
	"testing"
	"time"
)

// For polls cond every 10 ms until it holds, and fails t if it does not
// within 10 s.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
