package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/internal/testkit"
)

// TestAuditWithRealKubos: a curator and an admitted follower, with real
// kubos, pin a 3 MiB file (rmin=rmax=2); an audit proves both hold it (a path of the DAG from each
// kubo's own blockstore). The second kubo then drops it behind Pinring's
// back (pin rm and repo gc, before the tracker's recover pass would pin it
// again): the next audit of it fails, saying the block is not there, and
// cluster-ctl exits non-zero and status says so; a's own audit rounds
// (every 2 s here) find it as well, peers ls and /health show b failing,
// and after 2 rounds in which every audit of b failed a suspends b (a
// revocation with the reason): the pin moves to a third peer, whose kubo
// pins it.
func TestAuditWithRealKubos(t *testing.T) {
	ka, kb, kc := startKubo(t), startKubo(t), startKubo(t)
	a := newPeer(t, ka)
	a.env = append(a.env, "PINRING_AUDIT_INTERVAL=2s", "PINRING_AUDIT_FAIL_ROUNDS=2") // rounds of its own, too
	a.start(t)
	// b follows (a ticket): a, the one writer, is in charge of every pin
	// and so audits b in its rounds; a curator admits b to give it pins.
	b := newPeer(t, kb, "--ticket", a.ticket(t))
	b.start(t)
	id, err := b.client(t).ID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.mustCtl(t, "peers", "admit", id.ID.String())
	testkit.WaitFor(t, 60*time.Second, "a to have b's metrics", func() bool {
		ms, err := a.client(t).Metrics(context.Background(), "freespace")
		return err == nil && len(ms) == 2
	})
	file := filepath.Join(t.TempDir(), "data")
	randomFile(t, file, 3<<20)
	c := strings.TrimSpace(a.mustCtl(t, "add", "-Q", "--rmin", "2", "--rmax", "2", file))
	pinnedBy := func(k *kuboNode) bool {
		out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", c)
		return err == nil && strings.Contains(out, c)
	}
	testkit.WaitFor(t, 60*time.Second, "both kubos to pin the file", func() bool { return pinnedBy(ka) && pinnedBy(kb) })
	testkit.WaitFor(t, 30*time.Second, "a connected to b", func() bool {
		out, err := a.ctl(t, "audit", c)
		return err == nil && strings.Count(out, "PROVED") == 2
	})

	// c joins and is admitted now, so that the pin was placed on b.
	cp := newPeer(t, kc, "--ticket", a.ticket(t))
	cp.start(t)
	cid, err := cp.client(t).ID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.mustCtl(t, "peers", "admit", cid.ID.String())
	// b passed an audit (its cap is lifted ring-wide); c has not yet.
	if adm := a.mustCtl(t, "peers", "admissions"); !strings.Contains(adm, id.ID.String()+" | admitted") || !strings.Contains(adm, "passed an audit at") {
		t.Errorf("admissions after b's pass:\n%s", adm)
	}
	testkit.WaitFor(t, 30*time.Second, "peers ls to show c not verified yet", func() bool {
		ls, err := a.ctl(t, "peers", "ls")
		return err == nil && strings.Contains(ls, "> Audits: not verified yet: at most 100 pins")
	})

	kb.ipfs(t, "pin", "rm", c)
	kb.ipfs(t, "repo", "gc")
	out, err := a.ctl(t, "audit", c)
	if err == nil || strings.Count(out, "PROVED") != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "not found locally") {
		t.Fatalf("an audit after b's kubo dropped the file: %v\n%s", err, out)
	}
	t.Logf("audit after the drop:\n%s", out)
	if st := a.mustCtl(t, "status", c); !strings.Contains(st, "AUDIT FAILING") {
		t.Errorf("status after the failed audit does not say so:\n%s", st)
	}
	if h := a.mustCtl(t, "health"); !strings.Contains(h, "audits: 1 peers failed their last audit") {
		t.Errorf("health after the failed audit does not say so:\n%s", h)
	}
	// a's own rounds find it too, and peers ls says so.
	// (The audit above counts one failure; the rounds add more.)
	testkit.WaitFor(t, 30*time.Second, "peers ls at a to show b failing its audits, rounds included", func() bool {
		ls, err := a.ctl(t, "peers", "ls")
		return err == nil && strings.Contains(ls, "> Audits: FAILING (") && !strings.Contains(ls, "> Audits: FAILING (1 in a row")
	})
	testkit.WaitFor(t, 60*time.Second, "a to suspend b and c's kubo to pin the file instead", func() bool {
		adm, err := a.ctl(t, "peers", "admissions")
		return err == nil && strings.Contains(adm, "suspended by audits") && pinnedBy(kc)
	})
	pin, err := a.client(t).Allocation(context.Background(), mustCid(t, c))
	if err != nil || len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, id.ID) {
		t.Fatalf("allocations after the suspension: %v (%v), want two without b", pin.Allocations, err)
	}
	if m := a.mustCtl(t, "--enc", "json", "health"); !strings.Contains(m, "peers failed their last audit") {
		t.Errorf("/health no longer names b: %s", m)
	}
}
