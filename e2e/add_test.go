package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestAddMatchesIpfsAdd: `cluster-ctl add` gives the CID `ipfs add` gives,
// for a file and a directory, with kubo's default and CIDv1 options, and
// the content ends up pinned in kubo.
func TestAddMatchesIpfsAdd(t *testing.T) {
	ctx := context.Background()
	k := startKubo(t)
	p := newPeer(t, k)
	p.start(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "big.bin")
	randomFile(t, file, 3<<20+12345)
	tree := filepath.Join(dir, "tree")
	randomFile(t, filepath.Join(tree, "a.txt"), 1000)
	randomFile(t, filepath.Join(tree, "sub", "b.bin"), 700<<10)
	// What ipfs add -r keeps and leaves out: hidden names (unless -H), an
	// empty directory, a symbolic link (added as a link, not followed).
	randomFile(t, filepath.Join(tree, "sub", "b c+d%.txt"), 100) // escaped on the wire
	randomFile(t, filepath.Join(tree, ".hidden"), 10)
	randomFile(t, filepath.Join(tree, ".hiddendir", "x"), 10)
	if err := os.MkdirAll(filepath.Join(tree, "sub", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"file", []string{file}},
		{"file cidv1", []string{"--cid-version=1", file}},
		{"file trickle raw leaves", []string{"--layout=trickle", "--raw-leaves", "--cid-version=1", file}},
		{"directory", []string{tree}},
		{"directory cidv1", []string{"--cid-version=1", tree}},
		{"directory with hidden files", []string{"--hidden", tree}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kuboArgs := []string{"add", "-q", "--only-hash", "-r"}
			var ctlArgs []string
			for _, a := range tc.args {
				if strings.HasPrefix(a, "--") {
					kuboArgs = append(kuboArgs, strings.Replace(a, "--layout=trickle", "--trickle", 1))
					ctlArgs = append(ctlArgs, a)
				}
			}
			path := tc.args[len(tc.args)-1]
			out := strings.Fields(k.ipfs(t, append(kuboArgs, path)...))
			want := out[len(out)-1]
			got := strings.TrimSpace(p.mustCtl(t, append(append([]string{"add", "-Q"}, ctlArgs...), path)...))
			if got != want {
				t.Fatalf("cluster-ctl add %v: %s, ipfs add: %s", tc.args, got, want)
			}
			testkit.WaitFor(t, 60*time.Second, "kubo to pin the added root", func() bool {
				out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", got)
				return err == nil && strings.Contains(out, got)
			})
			if _, err := p.client(t).Allocation(ctx, mustCid(t, got)); err != nil {
				t.Fatalf("the root is not in the pinset: %v", err)
			}
		})
	}
	// --json streams an object per file, as IPFS Cluster does: one for a
	// single file, which is the root, with the DAG's size (and no
	// allocations: one peer, the pin is everywhere).
	out := p.mustCtl(t, "--json", "add", file)
	objs, err := decodeAll[api.AddedOutput](out)
	if err != nil || len(objs) != 1 || objs[0].Size <= 3<<20+12345 || objs[0].Size > 3<<20+12345+1024 || len(objs[0].Allocations) != 0 {
		t.Fatalf("--json add: %v\n%s", err, out)
	}
	// --no-stream: one JSON array at the end.
	out = p.mustCtl(t, "--json", "add", "--no-stream", file)
	var arr []api.AddedOutput
	if err := json.Unmarshal([]byte(out), &arr); err != nil || len(arr) != 1 || arr[0].Cid != objs[0].Cid {
		t.Fatalf("--json add --no-stream: %v\n%s", err, out)
	}
}

// TestErasureCoding: 6 kubos and 6 peers; a 20 MiB file added with 4+2
// shards; the adding peer and another die with their kubos; ec get
// returns identical bytes; repair puts all 6 shards back on live peers.
func TestErasureCoding(t *testing.T) {
	ctx := context.Background()
	const n = 6
	var ks []*kuboNode
	for range n {
		ks = append(ks, startKubo(t))
	}
	fast := []string{"PINRING_MONITOR_INTERVAL=1s", "PINRING_REPAIR_GRACE=3s", "PINRING_REPAIR_INTERVAL=1s"}
	first := newPeerEnv(t, ks[0], fast)
	first.start(t)
	ps := []*peerNode{first}
	for i := 1; i < n; i++ {
		p := newPeerEnv(t, ks[i], append(first.writerEnv(t), append(fast, "PINRING_CLUSTER_BOOTSTRAP="+loopbackP2P(t, first))...))
		p.start(t)
		ps = append(ps, p)
	}
	ids := map[peer.ID]int{}
	for i, p := range ps {
		id, err := p.client(t).ID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[id.ID] = i
	}
	testkit.WaitFor(t, 60*time.Second, "every peer's metrics at the first", func() bool {
		ms, err := first.client(t).Metrics(ctx, "freespace")
		return err == nil && len(ms) == n
	})
	// Metrics arrive through gossipsub, also from peers the first is not
	// connected to yet; the blocks of each shard are pushed to its peer
	// directly, and a push that cannot dial is lost once the adder's kubo
	// dies below (seen once: "pushing blocks to …: all dials failed").
	testkit.WaitFor(t, 60*time.Second, "the first connected to every other peer", func() bool {
		connected := 0
		err := first.client(t).Peers(ctx, func(id api.ID) error {
			if id.Connected {
				connected++
			}
			return nil
		})
		return err == nil && connected == n-1
	})
	file := filepath.Join(t.TempDir(), "holiday video+1.bin") // a name escaped on the wire
	data := randomFile(t, file, 20<<20)
	root := strings.TrimSpace(first.mustCtl(t, "add", "-Q", "--erasure", "--data-shards", "4", "--parity-shards", "2", file))
	if want := strings.TrimSpace(ks[0].ipfs(t, "add", "-q", "--only-hash", file)); root != want {
		t.Fatalf("the erasure-coded file is known as %s, ipfs add says %s", root, want)
	}
	if meta, err := first.client(t).Allocation(ctx, mustCid(t, root)); err != nil || meta.Name != "holiday video+1.bin" {
		t.Fatalf("the erasure-coded file's pin: name %q, %v", meta.Name, err)
	}
	// The blocks were pushed to each shard's peer while the add ran: with
	// the adding peer's kubo gone at once, the five shards on other peers
	// still get pinned (nobody else has their blocks).
	if err := ks[0].proc.kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ks[0].proc.wait(10 * time.Second)
	shards := func(from *peerNode) []api.GlobalPinInfo {
		out, err := from.ctl(t, "--json", "status")
		gs, derr := decodeAll[api.GlobalPinInfo](out)
		if err != nil || derr != nil {
			return nil
		}
		return slices.DeleteFunc(gs, func(g api.GlobalPinInfo) bool { return g.Type != api.ShardType })
	}
	// pinnedOn counts shards pinned by their allocated peer, with the
	// peers holding them.
	pinnedOn := func(gs []api.GlobalPinInfo) (int, map[peer.ID]int) {
		n, on := 0, map[peer.ID]int{}
		for _, g := range gs {
			if len(g.Allocations) != 1 {
				continue
			}
			on[g.Allocations[0]]++
			if g.PeerMap[g.Allocations[0].String()].Status == api.StatusPinned {
				n++
			}
		}
		return n, on
	}
	testkit.WaitFor(t, 120*time.Second, "the 5 shards on other peers pinned without the adder's kubo, 6 distinct peers", func() bool {
		gs := shards(ps[2])
		others := slices.DeleteFunc(slices.Clone(gs), func(g api.GlobalPinInfo) bool {
			return len(g.Allocations) == 1 && ids[g.Allocations[0]] == 0
		})
		n, _ := pinnedOn(others)
		_, on := pinnedOn(gs)
		return len(gs) == 6 && len(on) == 6 && len(others) == 5 && n == 5
	})
	if st := ps[2].mustCtl(t, "status", root); !strings.Contains(st, "EC 4+2") || !strings.Contains(st, "0 verified by audits") {
		t.Fatalf("status of the file:\n%s", st)
	}
	// Each shard is audited like any pin: status counts the proved ones,
	// and the shard on the adder, whose kubo is down, fails its audit.
	testkit.WaitFor(t, 60*time.Second, "the 5 shards away from the adder proved and the adder's failing", func() bool {
		for _, g := range shards(ps[2]) {
			ps[2].ctl(t, "audit", g.Cid.String())
		}
		st, err := ps[2].ctl(t, "status", root)
		return err == nil && strings.Contains(st, "5 verified by audits, 1 FAILING an audit")
	})

	// The adding peer and one more die (with their kubos).
	for _, pr := range []*proc{ps[0].proc, ps[1].proc, ks[1].proc} {
		if err := pr.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pr.wait(10 * time.Second)
	}
	reader := ps[2]
	// A reader takes the shards of the peers it knows to be alive: wait
	// until it knows of both deaths (a ping expired, as `health alerts`
	// shows). Reading before that waits for a dead peer's shard until
	// ecfile.ShardIdle and fails (seen in CI when the read came first).
	testkit.WaitFor(t, 30*time.Second, "the reader's alerts for the two dead peers", func() bool {
		alerts, err := reader.client(t).Alerts(ctx)
		dead := map[peer.ID]bool{}
		for _, a := range alerts {
			if i, ok := ids[a.Peer]; ok && i < 2 {
				dead[a.Peer] = true
			}
		}
		return err == nil && len(dead) == 2
	})
	out := filepath.Join(t.TempDir(), "back.bin")
	start := time.Now()
	if msg, err := reader.ctl(t, "ec", "get", root, "-o", out); err != nil {
		t.Fatalf("ec get with two peers gone: %v\n%s", err, msg)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Fatalf("ec get returned %d bytes that differ from the %d added", len(got), len(data))
	}
	t.Logf("ec get of 20 MiB with 2 of 6 shards gone: %.1f MiB/s", 20/time.Since(start).Seconds())

	// Repair (the background loop, after repair.grace) rebuilds the two
	// lost shards onto live peers.
	testkit.WaitFor(t, 180*time.Second, "all 6 shards pinned on live peers", func() bool {
		gs := shards(reader)
		n, on := pinnedOn(gs)
		for pid := range on {
			if ids[pid] < 2 {
				return false
			}
		}
		return len(gs) == 6 && n == 6
	})
	if msg := reader.mustCtl(t, "ec", "repair", root); !strings.Contains(msg, "nothing to repair") {
		t.Fatalf("ec repair after the background repair: %s", msg)
	}
}
