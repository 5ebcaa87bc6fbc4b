package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// toolBin is a client of IPFS Cluster's that make builds into bin/ (make
// test does it); the test fails, never skips, without it.
func toolBin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot, "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built: run 'make cluster-clients' (make test does it): %v", p, err)
	}
	return p
}

// TestIPFSClusterClients runs IPFS Cluster's own clients, unchanged,
// against three Pinring peers with basic auth: ipfs-cluster-ctl v1.1.6,
// its Go REST client (tools/ipfs-cluster/conformance) and the npm package
// @nftstorage/ipfs-cluster (tools/js). All three are built or installed
// from the registries by make test.
func TestIPFSClusterClients(t *testing.T) {
	ctx := context.Background()
	ctlBin := toolBin(t, "ipfs-cluster-ctl")
	conformance := toolBin(t, "cluster-conformance")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for IPFS Cluster's JavaScript client: %v", err)
	}
	jsDir := filepath.Join(repoRoot, "tools", "js")
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@nftstorage", "ipfs-cluster")); err != nil {
		t.Fatalf("@nftstorage/ipfs-cluster not installed: run 'make cluster-clients' (make test does it): %v", err)
	}

	const user, pass = "curator", "correct horse"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	authEnv := []string{"PINRING_API_BASIC_AUTH_CREDENTIALS=" + user + "=" + string(hash), "PINRING_MONITOR_INTERVAL=1s"}
	const n = 3
	var ps []*peerNode
	var ks []*kuboNode
	for i := range n {
		k := startKubo(t)
		env := authEnv
		var init []string
		if i > 0 {
			env = append(slices.Clone(authEnv), ps[0].writerEnv(t)...)
			init = []string{"--join", loopbackP2P(t, ps[0])}
		}
		p := newPeerEnv(t, k, env, init...)
		p.auth = user + ":" + pass
		p.start(t)
		ps, ks = append(ps, p), append(ks, k)
	}
	first := ps[0]
	var pids []string
	for _, p := range ps {
		id, err := p.client(t).ID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, id.ID.String())
	}
	testkit.WaitFor(t, 60*time.Second, "every peer's metrics and connections at the first", func() bool {
		ms, err := first.client(t).Metrics(ctx, "freespace")
		connected := 0
		err2 := first.client(t).Peers(ctx, func(id api.ID) error {
			if id.Connected {
				connected++
			}
			return nil
		})
		return err == nil && err2 == nil && len(ms) == n && connected == n-1
	})
	// Three kubos that know each other: a pin at rf 2 fetches from the adder.
	for _, k := range ks[1:] {
		addrs := strings.Fields(ks[0].ipfs(t, "id", "-f", "<addrs>\n"))
		ks0 := strings.TrimSpace(ks[0].ipfs(t, "id", "-f", "<id>"))
		k.ipfs(t, "swarm", "connect", addrs[0]+"/p2p/"+ks0)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(file, []byte("hello from ipfs-cluster-ctl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	for name, body := range map[string]string{"a.txt": "a\n", "sub/b.txt": "b\n", "sub/deeper/c.txt": strings.Repeat("c", 300_000)} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ipfsAdd := func(args ...string) string {
		lines := strings.Fields(ks[0].ipfs(t, append([]string{"add", "-q", "--only-hash"}, args...)...))
		return lines[len(lines)-1]
	}

	t.Run("ipfs-cluster-ctl", func(t *testing.T) {
		// ctl runs ipfs-cluster-ctl as a script would; it must exit 0.
		ctl := func(args ...string) string {
			t.Helper()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(cctx, ctlBin, append([]string{"--host", "/ip4/127.0.0.1/tcp/" + strings.Split(first.api, ":")[1],
				"--basic-auth", user + ":" + pass, "--force-http"}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ipfs-cluster-ctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
			}
			return string(out)
		}
		// jsonOf runs a command with --enc json and returns the objects it
		// printed: one a line as a stream, or one array.
		jsonOf := func(args ...string) []map[string]any {
			t.Helper()
			out := ctl(append([]string{"--enc", "json"}, args...)...)
			vals, err := decodeAll[any](out)
			var objs []map[string]any
			for _, v := range vals {
				switch v := v.(type) {
				case map[string]any:
					objs = append(objs, v)
				case []any:
					for _, o := range v {
						if m, ok := o.(map[string]any); ok {
							objs = append(objs, m)
						}
					}
				}
			}
			if err != nil || len(objs) == 0 {
				t.Fatalf("ipfs-cluster-ctl --enc json %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return objs
		}
		mustContain := func(what, out string, want ...string) {
			t.Helper()
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Fatalf("%s: no %q in\n%s", what, w, out)
				}
			}
		}

		mustContain("id", ctl("id"), pids[0], "Sees 2 other peers", "> IPFS: ")
		if id := jsonOf("id")[0]; id["id"] != pids[0] || len(id["cluster_peers"].([]any)) != n {
			t.Fatalf("--enc json id: %v", id)
		}
		mustContain("version", ctl("version"), api.Version)
		if v := jsonOf("version")[0]; v["version"] != api.Version {
			t.Fatalf("--enc json version: %v", v)
		}
		mustContain("peers ls", ctl("peers", "ls"), pids...)
		if peers := jsonOf("peers", "ls"); len(peers) != n {
			t.Fatalf("--enc json peers ls: %d peers", len(peers))
		}

		// add: the same CIDs as ipfs add, in every form.
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"a file", []string{file}, ipfsAdd(file)},
			{"a directory", []string{"-r", tree}, ipfsAdd("-r", tree)},
			{"CIDv1", []string{"--cid-version", "1", file}, ipfsAdd("--cid-version", "1", file)},
			{"raw leaves", []string{"--raw-leaves", "-r", tree}, ipfsAdd("--raw-leaves", "-r", tree)},
			{"wrapped", []string{"--wrap-with-directory", file}, ipfsAdd("--wrap-with-directory", file)},
		} {
			out := ctl(append([]string{"add"}, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if last := strings.Fields(lines[len(lines)-1]); len(last) < 2 || last[0] != "added" || last[1] != tc.want {
				t.Fatalf("add %s: the last line is not the root %s:\n%s", tc.name, tc.want, out)
			}
			objs := jsonOf(append([]string{"add"}, tc.args...)...)
			root := objs[len(objs)-1]
			// Replicated everywhere (the default), a pin lists no
			// allocations, as in IPFS Cluster.
			if root["cid"] != tc.want || root["size"] == nil {
				t.Fatalf("--enc json add %s: %v", tc.name, objs)
			}
		}
		// ipfs add -r prints every file and directory; so does ctl.
		out := ctl("add", "-r", tree)
		mustContain("add -r", out, " tree/a.txt\n", " tree/sub/b.txt\n", " tree/sub/deeper/c.txt\n", " tree/sub/deeper\n", " tree/sub\n", " tree\n")
		if got := strings.Count(out, "added "); got != 6 {
			t.Fatalf("add -r: %d lines, want 6:\n%s", got, out)
		}
		// A CAR exported by kubo comes back as the same root, pinned.
		carRoot := strings.TrimSpace(ks[1].ipfs(t, "add", "-Q", "-r", tree))
		carFile := filepath.Join(dir, "tree.car")
		exp := exec.Command(kubo, "dag", "export", carRoot)
		exp.Env = append(os.Environ(), ks[1].env...)
		carBytes, err := exp.Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(carFile, carBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		mustContain("add --format car", ctl("add", "--format", "car", carFile), "added "+carRoot+" tree.car")
		if objs := jsonOf("add", "--format", "car", carFile); objs[0]["cid"] != carRoot || objs[0]["bytes"] == nil {
			t.Fatalf("--enc json add --format car: %v", objs)
		}
		mustContain("pin ls of the CAR's root", ctl("pin", "ls", carRoot), carRoot, "tree.car")

		// pin add with every option, waited for.
		c1 := ipfsAdd("--cid-version", "1", file)
		out = ctl("pin", "add", "--name", "ctl pin", "--replication-min", "2", "--replication-max", "2",
			"--metadata", "curator=ctl", "--metadata", "kind=test", "--expire-in", "1h",
			"--allocations", pids[1]+","+pids[2], "--wait", "--wait-timeout", "90s", c1)
		mustContain("pin add", out, c1, "ctl pin", "PINNED")
		pin := jsonOf("pin", "ls", c1)[0]
		allocs := fmt.Sprint(pin["allocations"])
		if pin["name"] != "ctl pin" || pin["replication_factor_min"] != 2.0 || pin["reference"] != nil || pin["pin_update"] != nil ||
			pin["metadata"].(map[string]any)["curator"] != "ctl" || pin["expire_at"] == nil ||
			!strings.Contains(allocs, pids[1]) || !strings.Contains(allocs, pids[2]) {
			t.Fatalf("--enc json pin ls %s: %v", c1, pin)
		}
		mustContain("pin ls", ctl("pin", "ls"), c1+" | ctl pin | PIN | Repl. Factor: 2--2", "Metadata: yes", "Recursive")
		if pins := jsonOf("pin", "ls", "--filter", "pin"); !slices.ContainsFunc(pins, func(p map[string]any) bool { return p["cid"] == c1 }) {
			t.Fatalf("--enc json pin ls --filter pin lacks %s", c1)
		}
		c3 := ipfsAdd(filepath.Join(tree, "a.txt"))
		if st := jsonOf("pin", "add", "--no-status", "--replication", "1", "--name", "third", c3)[0]; st["cid"] != c3 || st["name"] != "third" || st["replication_factor_max"] != 1.0 {
			t.Fatalf("--enc json pin add --no-status: %v", st)
		}

		// status: all, one, filtered, local; in text and JSON.
		mustContain("status", ctl("status"), c1, "PINNED")
		mustContain("status one", ctl("status", c1), c1+" | ctl pin:", "PINNED")
		for _, st := range jsonOf("status", "--filter", "pinned") {
			for p, pi := range st["peer_map"].(map[string]any) {
				if s := pi.(map[string]any)["status"]; s != "pinned" {
					t.Fatalf("status --filter pinned lists %s as %s on %s", st["cid"], s, p)
				}
			}
		}
		if st := jsonOf("status", "--local", c1)[0]; len(st["peer_map"].(map[string]any)) != 1 {
			t.Fatalf("--enc json status --local: %v", st)
		}
		mustContain("status --filter", ctl("status", "--filter", "pinned"), c1, "PINNED")
		if out := ctl("status", "--local", c1); strings.Count(out, "> ") != 1 {
			t.Fatalf("status --local %s: want one peer\n%s", c1, out)
		}
		if sts := jsonOf("status"); !slices.ContainsFunc(sts, func(m map[string]any) bool { return m["cid"] == c1 }) {
			t.Fatalf("--enc json status lacks %s", c1)
		}
		if st := jsonOf("status", c1)[0]; st["cid"] != c1 || len(st["peer_map"].(map[string]any)) != n {
			t.Fatalf("--enc json status %s: %v", c1, st)
		}
		mustContain("recover", ctl("recover", c1), c1)
		if rec := jsonOf("recover", c1)[0]; rec["cid"] != c1 {
			t.Fatalf("--enc json recover: %v", rec)
		}
		// Nothing is in error: recovering everything lists nothing, as
		// in IPFS Cluster (it answers with the pins it retried).
		ctl("recover", "--local")
		if out := ctl("--enc", "json", "recover", "--local"); strings.TrimSpace(out) != "" {
			if _, err := decodeAll[map[string]any](out); err != nil {
				t.Fatalf("--enc json recover --local: %v\n%s", err, out)
			}
		}

		// pin update: the new CID takes the old one's options.
		c2 := ipfsAdd("-r", tree)
		mustContain("pin update", ctl("pin", "update", "--wait", "--wait-timeout", "90s", c1, c2), c2, "PINNED")
		if upd := jsonOf("pin", "ls", c2)[0]; upd["name"] != "ctl pin" || upd["replication_factor_min"] != 2.0 || upd["pin_update"] != c1 {
			t.Fatalf("--enc json pin ls after pin update: %v", upd)
		}

		c4 := ipfsAdd(filepath.Join(tree, "sub", "b.txt"))
		if upd := jsonOf("pin", "update", "--no-status", c2, c4)[0]; upd["cid"] != c4 || upd["pin_update"] != c2 || upd["name"] != "ctl pin" {
			t.Fatalf("--enc json pin update: %v", upd)
		}

		// health.
		// ctl prints the graph as DOT whatever --enc says.
		mustContain("health graph", ctl("health", "graph"), "digraph cluster", pids[1][len(pids[1])-6:])
		mustContain("health bandwidth", ctl("health", "bandwidth"), "/meshsub/")
		if bw := jsonOf("health", "bandwidth")[0]; len(bw) == 0 {
			t.Fatalf("--enc json health bandwidth: %v", bw)
		}
		mustContain("health metrics", ctl("health", "metrics"), "freespace")
		out = ctl("health", "metrics", "freespace")
		if strings.Count(out, "freespace:") != n {
			t.Fatalf("health metrics freespace:\n%s", out)
		}
		if ms := jsonOf("health", "metrics", "freespace"); len(ms) != n {
			t.Fatalf("--enc json health metrics freespace: %v", ms)
		}
		ctl("health", "alerts")
		jsonOfArrayOK := ctl("--enc", "json", "health", "alerts")
		if !json.Valid([]byte(jsonOfArrayOK)) {
			t.Fatalf("--enc json health alerts is not JSON:\n%s", jsonOfArrayOK)
		}

		// pin rm, waited for; the pin is gone.
		mustContain("pin rm", ctl("pin", "rm", "--wait", "--wait-timeout", "90s", c2), c2)
		for _, c := range []string{c1, c3, c4} {
			if st := jsonOf("pin", "rm", "--no-status", c)[0]; st["cid"] != c {
				t.Fatalf("--enc json pin rm: %v", st)
			}
		}
		if out := ctl("pin", "ls"); strings.Contains(out, c1) || strings.Contains(out, c2) || strings.Contains(out, c3) || strings.Contains(out, c4) {
			t.Fatalf("pin ls after pin rm:\n%s", out)
		}
	})

	t.Run("JavaScript client", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, node, "--test", "--test-reporter=spec", "cluster-client.test.mjs")
		cmd.Dir = jsDir
		cmd.Env = append(os.Environ(), "PINRING_API=http://"+first.api+"/", "PINRING_AUTH="+user+":"+pass, fmt.Sprintf("PINRING_PEERS=%d", n))
		out, err := cmd.CombinedOutput()
		t.Logf("node --test:\n%s", out)
		if err != nil {
			t.Fatalf("@nftstorage/ipfs-cluster: %v", err)
		}
		if !bytes.Contains(out, []byte("fail 0")) || bytes.Contains(out, []byte("pass 0")) {
			t.Fatalf("node --test did not report its tests passing")
		}
	})
	t.Run("Go REST client", func(t *testing.T) {
		subdir := filepath.Join(dir, "wrapme")
		if err := os.MkdirAll(subdir, 0o755); err != nil {
			t.Fatal(err)
		}
		entry := filepath.Join(subdir, "entry.txt")
		if err := os.WriteFile(entry, []byte("an entry to pin by path\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The client adds a directory argument's contents under its
		// name; wrapped, the root is the directory holding "entry.txt".
		// Last, as the third peer leaves the cluster at the end.
		out, err := runCmd(t, nil, conformance, "-api", first.api, "-user", user, "-pass", pass, "-peers", fmt.Sprint(n),
			"-file", file+"="+ipfsAdd(file), "-dir", entry+"="+ipfsAdd("--wrap-with-directory", entry), "-leave", ps[2].api)
		t.Logf("conformance:\n%s", out)
		if err != nil {
			t.Fatalf("IPFS Cluster's Go client: %v", err)
		}
		if strings.Count(out, "ok   ") < 30 {
			t.Fatalf("fewer checks ran than written:\n%s", out)
		}
	})

}
