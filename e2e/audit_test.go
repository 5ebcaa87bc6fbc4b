package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// TestAuditWithRealKubos: a curator and an admitted follower, with real
// kubos, pin a 3 MiB file (rmin=rmax=2); an audit proves both hold it (a path of the DAG from each
// kubo's own blockstore). The second kubo then drops it behind Pinring's
// back (pin rm and repo gc; its tracker's recover pass, which would pin it
// again, is off): the next audit of it fails, saying the block is not there, and
// cluster-ctl exits non-zero and status says so; a's own audit rounds
// (every 2 s here) find it as well, peers ls and /health show b failing,
// and after 2 failed audits of its replica in a row that replica is lost:
// the pin moves to a third peer, whose kubo pins it.
func TestAuditWithRealKubos(t *testing.T) {
	ka, kb, kc := startKubo(t), startKubo(t), startKubo(t)
	a := newPeer(t, ka)
	a.env = append(a.env, "PINRING_AUDIT_INTERVAL=2s", "PINRING_AUDIT_FAIL_ROUNDS=2", "PINRING_AUDIT_GRACE=1s") // rounds of its own, too
	a.start(t)
	// b follows (a ticket): a, the one writer, is in charge of every pin
	// and so audits b in its rounds; a curator admits b to give it pins.
	b := newPeer(t, kb, "--ticket", a.ticket(t))
	b.env = append(b.env, "PINRING_TRACKER_RECOVER_INTERVAL=1h") // its drop below is not undone behind the test's back
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
	// b's one replica failed 2 audits in a row: it is lost and moves (a
	// peer with more pins would also be suspended: TestAuditsCatchLiars).
	testkit.WaitFor(t, 60*time.Second, "the failed replica to move to c, whose kubo pins the file", func() bool {
		return pinnedBy(kc)
	})
	pin, err := a.client(t).Allocation(context.Background(), mustCid(t, c))
	if err != nil || len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, id.ID) {
		t.Fatalf("allocations after the suspension: %v (%v), want two without b", pin.Allocations, err)
	}
	if m := a.mustCtl(t, "--enc", "json", "health"); !strings.Contains(m, "peers failed their last audit") {
		t.Errorf("/health no longer names b: %s", m)
	}

	// A pin nobody provides, allocated to c: c's kubo keeps trying, and
	// c answers an audit "still fetching" — no proof (exit non-zero), no
	// failure of c (within audit.fetch_limit of the pin's record).
	absent := filepath.Join(t.TempDir(), "absent")
	randomFile(t, absent, 4096)
	nobody := strings.TrimSpace(ka.ipfs(t, "add", "-Q", "--only-hash", absent))
	a.mustCtl(t, "pin", "add", "--no-status", "--rmin", "1", "--rmax", "1", "--allocations", cid.ID.String(), nobody)
	testkit.WaitFor(t, 30*time.Second, "c to be fetching the absent pin", func() bool {
		st, err := a.ctl(t, "status", nobody)
		return err == nil && (strings.Contains(st, "PINNING") || strings.Contains(st, "PIN_QUEUED") || strings.Contains(st, "PIN_ERROR"))
	})
	out, err = a.ctl(t, "audit", nobody)
	if err == nil || !strings.Contains(out, "FETCHING (no proof yet, no failure): ") || !strings.Contains(out, "still fetching (") {
		t.Fatalf("an audit of a pin c is still fetching: %v\n%s", err, out)
	}
	if st := a.mustCtl(t, "--enc", "json", "status", nobody); !strings.Contains(st, `"fetching: still fetching (`) {
		t.Errorf("status of a replica still fetching: %s", st)
	}
	if ls := a.mustCtl(t, "peers", "ls"); strings.Count(ls, "> Audits: FAILING") != 1 {
		t.Errorf("peers ls after c answered still fetching: only b should be failing:\n%s", ls)
	}
}

var (
	liarOnce sync.Once
	liarBin  string
	liarErr  error
)

// liarPeer builds, once, the dishonest cluster-peer of these tests
// (-tags pinring_liar: it says it pinned what it is allocated, and kubo
// never holds it).
func liarPeer(t *testing.T) string {
	t.Helper()
	liarOnce.Do(func() {
		liarBin = filepath.Join(binDir, "cluster-peer-liar")
		out, err := runCmd(t, nil, "go", "build", "-C", repoRoot, "-tags", "pinring_liar", "-o", liarBin, "./cmd/cluster-peer")
		if err != nil {
			liarErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if liarErr != nil {
		t.Fatalf("building the lying peer: %v", liarErr)
	}
	return liarBin
}

// TestAuditsCatchLiars: 4 peers with real kubos, pins at rmin=rmax=2. A
// follower deletes its pins from its kubo behind Pinring's back (its
// recover pass off), and a modified follower says it pinned what it never
// fetched. The curator's audit rounds catch both: each is suspended, its
// pins move, and every pin ends on two peers whose audits pass; the
// honest follower never fails an audit.
func TestAuditsCatchLiars(t *testing.T) {
	ka, kh, kd, kl := startKubo(t), startKubo(t), startKubo(t), startKubo(t)
	a := newPeer(t, ka)
	a.env = append(a.env, "PINRING_AUDIT_INTERVAL=2s", "PINRING_AUDIT_FAIL_ROUNDS=2", "PINRING_AUDIT_GRACE=10s", // time to fetch a moved pin under load
		"PINRING_MONITOR_INTERVAL=2s")
	a.start(t)
	ticket := a.ticket(t)
	follower := func(k *kuboNode, bin string, env ...string) (*peerNode, string) {
		p := newPeerEnv(t, k, append([]string{"PINRING_MONITOR_INTERVAL=2s"}, env...), "--ticket", ticket)
		p.bin = bin
		p.start(t)
		id, err := p.client(t).ID(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		a.mustCtl(t, "peers", "admit", id.ID.String())
		return p, id.ID.String()
	}
	_, hid := follower(kh, "")
	_, did := follower(kd, "", "PINRING_TRACKER_RECOVER_INTERVAL=1h")
	_, lid := follower(kl, liarPeer(t))
	testkit.WaitFor(t, 60*time.Second, "a to have the four peers' metrics", func() bool {
		ms, err := a.client(t).Metrics(context.Background(), "freespace")
		return err == nil && len(ms) == 4
	})
	var cids []string
	for i := range 12 {
		file := filepath.Join(t.TempDir(), fmt.Sprintf("f%d", i))
		randomFile(t, file, 200<<10)
		cids = append(cids, strings.TrimSpace(a.mustCtl(t, "add", "-Q", "--rmin", "2", "--rmax", "2", file)))
	}
	kubos := map[string]*kuboNode{hid: kh, did: kd}
	allocs := func(c string) []string {
		pin, err := a.client(t).Allocation(context.Background(), mustCid(t, c))
		if err != nil {
			return nil
		}
		var out []string
		for _, p := range pin.Allocations {
			out = append(out, p.String())
		}
		return out
	}
	pinnedBy := func(k *kuboNode, c string) bool {
		out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", c)
		return err == nil && strings.Contains(out, c)
	}
	onD, onL := 0, 0
	testkit.WaitFor(t, 90*time.Second, "the honest kubos to pin their share", func() bool {
		onD, onL = 0, 0
		for _, c := range cids {
			for _, p := range allocs(c) {
				switch k := kubos[p]; {
				case p == lid:
					onL++
				case k != nil && !pinnedBy(k, c):
					return false
				case p == did:
					onD++
				}
			}
		}
		return true
	})
	if onD == 0 || onL == 0 {
		t.Fatalf("the spread gave the deleter %d and the liar %d pins; the test needs both", onD, onL)
	}
	for _, c := range cids {
		if pinnedBy(kl, c) {
			t.Fatalf("the liar's kubo holds %s", c)
		}
		if slices.Contains(allocs(c), did) {
			kd.ipfs(t, "pin", "rm", c)
		}
	}
	kd.ipfs(t, "repo", "gc")
	// The blocks an add pushed to the liar's kubo are not pinned there
	// (the liar pins nothing): they go at its kubo's next garbage
	// collection, as they would on a liar's machine. Left there, the liar
	// answered audits of those pins from them, and was caught only when a
	// pin moved to it later (the test failed when none did).
	kl.ipfs(t, "repo", "gc")
	start := time.Now()
	testkit.WaitFor(t, 120*time.Second, "both liars suspended and every pin on a and the honest follower, pinned", func() bool {
		adm, err := a.ctl(t, "peers", "admissions")
		if err != nil || strings.Count(adm, "suspended by audits") != 2 {
			return false
		}
		for _, c := range cids {
			got := allocs(c)
			if len(got) != 2 || slices.Contains(got, did) || slices.Contains(got, lid) || !pinnedBy(kh, c) && slices.Contains(got, hid) {
				return false
			}
		}
		return true
	})
	t.Logf("deleter (%d pins) and liar (%d pins) suspended and their pins moved %.1fs after the deletion", onD, onL, time.Since(start).Seconds())
	adm := a.mustCtl(t, "peers", "admissions")
	for _, id := range []string{did, lid} {
		if !strings.Contains(adm, id+" | revoked") {
			t.Errorf("%s not revoked:\n%s", id, adm)
		}
	}
	ls := a.mustCtl(t, "peers", "ls")
	for l := range strings.Lines(ls) {
		if strings.Contains(l, "> Audits:") && strings.Contains(ls, hid) {
			t.Logf("%s", strings.TrimSpace(l))
		}
	}
	var h api.Health
	if out := a.mustCtl(t, "--enc", "json", "health"); json.Unmarshal([]byte(out), &h) != nil {
		t.Fatalf("health: %s", out)
	}
	for _, p := range h.ClusterPeers {
		if p.ID.String() == hid && (!strings.Contains(p.Audit, " 0 failed") || !strings.HasPrefix(p.Audit, "verified")) {
			t.Errorf("the honest follower's audits: %q, want verified with 0 failed", p.Audit)
		}
	}
}
