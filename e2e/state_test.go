package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// TestStateExportImport: a pinset exported from a stopped peer and
// imported into a stopped, emptied peer reaches every (emptied) peer when
// they start: one digest everywhere, every pin, written by the importer.
func TestStateExportImport(t *testing.T) {
	ctx := context.Background()
	k := startKubo(t)
	a := newPeer(t, k)
	a.start(t)
	b := joinPeer(t, k, a)
	b.start(t)
	for i := range 30 {
		// CIDs of content nobody has: only the pinset matters here.
		c := fmt.Sprintf("bafkreig%051d", i)
		if _, err := api.ParseCid(c); err != nil {
			c = strings.TrimSpace(k.ipfs(t, "add", "-q", "--only-hash", "../README.md"))
		}
		if _, err := a.client(t).Pin(ctx, mustCid(t, c), api.PinOptions{Name: fmt.Sprint("p", i), ReplicationFactorMin: 1, ReplicationFactorMax: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var want api.StateDigest
	testkit.WaitFor(t, 30*time.Second, "both peers equal", func() bool {
		d := digests(t, a, b)
		want = d[0]
		return d[0] == d[1] && d[0].Pins > 0
	})
	stop := func(p *peerNode) {
		if err := p.proc.kill(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.proc.wait(30 * time.Second); err != nil {
			t.Fatalf("stopping: %v", err)
		}
	}
	stop(a)
	stop(b)
	peerBin := filepath.Join(binDir, "cluster-peer")
	export := filepath.Join(t.TempDir(), "pins.jsonl")
	mustRun(t, a.env, peerBin, "--config", a.dir, "state", "export", "-f", export)
	if out := mustRun(t, a.env, peerBin, "--config", a.dir, "state", "digest"); !strings.HasPrefix(out, want.Digest) {
		t.Fatalf("offline digest %q, want %s", out, want.Digest)
	}
	for _, p := range []*peerNode{a, b} {
		if out, err := runCmd(t, p.env, peerBin, "--config", p.dir, "state", "cleanup"); err == nil || !strings.Contains(out, "not confirmed") {
			t.Fatalf("cleanup without --force or a yes: %v %s", err, out)
		}
		mustRun(t, p.env, peerBin, "--config", p.dir, "state", "cleanup", "--force")
	}
	out := mustRun(t, a.env, peerBin, "--config", a.dir, "state", "import", "-f", export)
	if !strings.Contains(out, fmt.Sprintf("imported %d pins", want.Pins)) {
		t.Fatalf("import: %s", out)
	}
	a.start(t)
	b.start(t)
	// Equal digests everywhere, with every pin (the records are new
	// versions written by the importing key, so the digest is not the old one).
	testkit.WaitFor(t, 60*time.Second, "both peers at one digest with every pin", func() bool {
		d := digests(t, a, b)
		return d[0] == d[1] && d[0].Pins == want.Pins
	})
	id, _ := a.client(t).ID(ctx)
	pins, err := decodeAll[api.Pin](b.mustCtl(t, "--json", "pin", "ls"))
	if err != nil || len(pins) == 0 || pins[0].Writer != id.WriteKey {
		t.Fatalf("imported pins at the other peer: %v, writer %q want %q", err, pins[0].Writer, id.WriteKey)
	}
}
