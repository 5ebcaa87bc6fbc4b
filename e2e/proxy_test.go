package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// TestIPFSProxyWithKuboCLI: the kubo CLI pointed at the proxy (--api) pins,
// lists, adds and unpins cluster-wide; other commands reach kubo. Then a
// second cluster uses the first one's proxy as its "kubo": a pin at the
// parent lands in the child cluster (clusters of clusters).
func TestIPFSProxyWithKuboCLI(t *testing.T) {
	ctx := context.Background()
	ks := []*kuboNode{startKubo(t), startKubo(t)}
	child := newPeer(t, ks[0])
	proxyPort := freePort(t)
	proxy := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", proxyPort)
	child.env = append(child.env, "PINRING_IPFSPROXY_LISTEN="+proxy)
	child.start(t)
	second := joinPeer(t, ks[1], child)
	second.start(t)
	viaProxy := func(args ...string) (string, error) {
		return runCmd(t, ks[0].env, kubo, append([]string{"--api", proxy}, args...)...)
	}

	// Content in the first kubo, pinned through the proxy: both kubos of
	// the cluster pin it (replication everywhere).
	path := filepath.Join(t.TempDir(), "f")
	data := make([]byte, 8<<10)
	rand.Read(data)
	os.WriteFile(path, data, 0o600)
	c := strings.TrimSpace(ks[0].ipfs(t, "add", "-q", "--pin=false", path))
	if out, err := viaProxy("pin", "add", c); err != nil || !strings.Contains(out, c) {
		t.Fatalf("ipfs --api proxy pin add: %v\n%s", err, out)
	}
	testkit.WaitFor(t, 30*time.Second, "the pin at the other peer", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, c))
		return err == nil
	})
	testkit.WaitFor(t, 60*time.Second, "the other kubo to pin it", func() bool {
		out, err := runCmd(t, ks[1].env, kubo, "pin", "ls", "--type=recursive", c)
		return err == nil && strings.Contains(out, c)
	})
	if out, err := viaProxy("pin", "ls", "--type=recursive"); err != nil || !strings.Contains(out, c) {
		t.Fatalf("pin ls through the proxy: %v\n%s", err, out)
	}
	// add: stored by kubo, pinned cluster-wide.
	path2 := filepath.Join(t.TempDir(), "g")
	rand.Read(data)
	os.WriteFile(path2, data, 0o600)
	out, err := viaProxy("add", "-q", path2)
	if err != nil {
		t.Fatalf("add through the proxy: %v\n%s", err, out)
	}
	added := strings.TrimSpace(out)
	testkit.WaitFor(t, 30*time.Second, "the added file in the cluster's pinset", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, added))
		return err == nil
	})
	// Every intercepted command, as kubo's CLI sends it, in JSON too.
	jsonVia := func(v any, args ...string) {
		t.Helper()
		out, err := viaProxy(append([]string{"--enc=json"}, args...)...)
		if err != nil {
			t.Fatalf("ipfs --api proxy --enc=json %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("ipfs --api proxy --enc=json %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var pins struct{ Pins []string }
	jsonVia(&pins, "pin", "add", c)
	if len(pins.Pins) != 1 || pins.Pins[0] != c {
		t.Fatalf("--enc=json pin add: %+v", pins)
	}
	var keys struct {
		Keys map[string]struct{ Type string }
	}
	jsonVia(&keys, "pin", "ls", "--type=recursive")
	if keys.Keys[c].Type != "recursive" || keys.Keys[added].Type != "recursive" {
		t.Fatalf("--enc=json pin ls: %+v", keys)
	}
	keys.Keys = nil
	jsonVia(&keys, "pin", "ls", c)
	if len(keys.Keys) != 1 || keys.Keys[c].Type != "recursive" {
		t.Fatalf("--enc=json pin ls %s: %+v", c, keys)
	}
	if out, err := viaProxy("pin", "ls", "--type=recursive", added); err != nil || !strings.Contains(out, added+" recursive") {
		t.Fatalf("pin ls %s through the proxy: %v\n%s", added, err, out)
	}
	// add -r -w: every entry as kubo prints it, the wrapping directory
	// last and pinned cluster-wide, with the CID kubo gives.
	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "a.txt"), []byte("a\n"), 0o600)
	os.WriteFile(filepath.Join(tree, "sub", "b.txt"), data, 0o600)
	wantRoot := strings.TrimSpace(ks[1].ipfs(t, "add", "-Q", "-r", "-w", "--only-hash", tree))
	out, err = viaProxy("add", "-r", "-w", tree)
	outLines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(outLines) != 5 || strings.TrimSpace(outLines[4]) != "added "+wantRoot || !strings.Contains(out, " tree/sub/b.txt\n") {
		t.Fatalf("add -r -w through the proxy (want root %s): %v\n%s", wantRoot, err, out)
	}
	if _, err := child.client(t).Allocation(ctx, mustCid(t, wantRoot)); err != nil {
		// The root's line comes once the pin is written at the proxy's peer.
		t.Fatalf("add -r -w answered before its root was in the pinset: %v", err)
	}
	// kubo's add prints text whatever --enc says; its RPC answer, which
	// the CLI reads, is JSON lines, the root last.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "rpc.txt")
	fw.Write([]byte("added over the RPC API\n"))
	mw.Close()
	resp, err := http.Post("http://127.0.0.1:"+fmt.Sprint(proxyPort)+"/api/v0/add?cid-version=1", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	rpcOut, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines, derr := decodeAll[struct{ Name, Hash, Size string }](string(rpcOut))
	if resp.StatusCode != 200 || derr != nil || len(lines) != 1 || lines[0].Name != "rpc.txt" || !strings.HasPrefix(lines[0].Hash, "bafkrei") {
		t.Fatalf("POST /api/v0/add through the proxy: %d %v\n%s", resp.StatusCode, derr, rpcOut)
	}
	if _, err := child.client(t).Allocation(ctx, mustCid(t, lines[0].Hash)); err != nil {
		t.Fatalf("the RPC add answered before its root was in the pinset: %v", err)
	}
	rpcRoot := lines[0].Hash
	// pin update: the new CID pinned with the old one's options, the old
	// one removed.
	if out, err := viaProxy("pin", "update", added, wantRoot); err != nil || !strings.Contains(out, wantRoot) {
		t.Fatalf("pin update through the proxy: %v\n%s", err, out)
	}
	testkit.WaitFor(t, 30*time.Second, "the updated-from CID gone from the cluster", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, added))
		return err != nil
	})
	pins.Pins = nil
	jsonVia(&pins, "pin", "update", "--unpin=false", wantRoot, rpcRoot)
	if len(pins.Pins) != 2 || pins.Pins[1] != rpcRoot {
		t.Fatalf("--enc=json pin update: %+v", pins)
	}
	var stat struct{ RepoSize, StorageMax uint64 }
	jsonVia(&stat, "repo", "stat", "--size-only")
	if stat.RepoSize == 0 || stat.StorageMax == 0 {
		t.Fatalf("--enc=json repo stat: %+v", stat)
	}
	pins.Pins = nil
	jsonVia(&pins, "pin", "rm", rpcRoot)
	if len(pins.Pins) != 1 || pins.Pins[0] != rpcRoot {
		t.Fatalf("--enc=json pin rm: %+v", pins)
	}

	// Anything else is kubo's own answer.
	if out, err := viaProxy("id", "-f", "<id>"); err != nil || !strings.HasPrefix(strings.TrimSpace(out), "12D3") {
		t.Fatalf("id through the proxy: %v\n%s", err, out)
	}
	if out, err := viaProxy("repo", "stat", "--size-only"); err != nil || !strings.Contains(out, "RepoSize") {
		t.Fatalf("repo stat through the proxy: %v\n%s", err, out)
	}
	if out, err := viaProxy("pin", "rm", c); err != nil {
		t.Fatalf("pin rm through the proxy: %v\n%s", err, out)
	}
	testkit.WaitFor(t, 30*time.Second, "the unpinned CID gone from the cluster", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, c))
		return err != nil
	})
	testkit.WaitFor(t, 60*time.Second, "the other kubo to unpin it", func() bool {
		out, err := runCmd(t, ks[1].env, kubo, "pin", "ls", "--type=recursive", c)
		return err != nil || !strings.Contains(out, c)
	})

	// A parent cluster whose "kubo" is the child cluster's proxy.
	parent := newPeerEnv(t, ks[0], []string{"PINRING_IPFS_API=" + proxy, "PINRING_CLUSTER_NAME=parent",
		"PINRING_P2P_MDNS=false"})
	parent.start(t)
	path3 := filepath.Join(t.TempDir(), "h")
	rand.Read(data)
	os.WriteFile(path3, data, 0o600)
	c3 := strings.TrimSpace(ks[1].ipfs(t, "add", "-q", "--pin=false", path3))
	parent.mustCtl(t, "pin", "add", c3)
	testkit.WaitFor(t, 60*time.Second, "the parent's pin in the child cluster and both its kubos", func() bool {
		if _, err := child.client(t).Allocation(ctx, mustCid(t, c3)); err != nil {
			return false
		}
		for _, k := range ks {
			out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", c3)
			if err != nil || !strings.Contains(out, c3) {
				return false
			}
		}
		return true
	})
	testkit.WaitFor(t, 30*time.Second, "the parent to report it pinned", func() bool {
		g, err := parent.client(t).Status(ctx, mustCid(t, c3), true)
		if err != nil {
			return false
		}
		for _, pi := range g.PeerMap {
			if pi.Status == api.StatusPinned {
				return true
			}
		}
		return false
	})
}
