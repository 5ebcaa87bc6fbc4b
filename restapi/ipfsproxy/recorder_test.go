package ipfsproxy

import (
	"net/http/httptest"
	"testing"
)

// The root's line of an add reaches the client only once released (after
// the cluster-wide pin), however kubo's answer is cut into writes.
func TestRootLineHeldUntilReleased(t *testing.T) {
	answer := `{"Name":"d/a","Hash":"QmA","Size":"5"}` + "\n" + `{"Name":"d","Hash":"QmRoot","Size":"60"}` + "\n"
	for _, step := range []int{1, 7, len(answer)} {
		w := httptest.NewRecorder()
		rec := &rootRecorder{ResponseWriter: w, hold: true}
		for i := 0; i < len(answer); i += step {
			if n, err := rec.Write([]byte(answer[i:min(i+step, len(answer))])); err != nil || n != min(step, len(answer)-i) {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
		if got := w.Body.String(); got != answer[:len(`{"Name":"d/a","Hash":"QmA","Size":"5"}`)+1] {
			t.Fatalf("step %d: passed on %q before the release", step, got)
		}
		if rec.root != "QmRoot" {
			t.Fatalf("step %d: root %q", step, rec.root)
		}
		rec.release()
		if w.Body.String() != answer {
			t.Fatalf("step %d: after the release %q", step, w.Body.String())
		}
	}
	w := httptest.NewRecorder()
	rec := &rootRecorder{ResponseWriter: w}
	rec.Write([]byte(answer))
	if w.Body.String() != answer || rec.root != "QmRoot" {
		t.Fatalf("without hold: %q, root %q", w.Body.String(), rec.root)
	}
}
