package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
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
	waitFor(t, 30*time.Second, "the pin at the other peer", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, c))
		return err == nil
	})
	waitFor(t, 60*time.Second, "the other kubo to pin it", func() bool {
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
	waitFor(t, 30*time.Second, "the added file in the cluster's pinset", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, added))
		return err == nil
	})
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
	waitFor(t, 30*time.Second, "the unpinned CID gone from the cluster", func() bool {
		_, err := second.client(t).Allocation(ctx, mustCid(t, c))
		return err != nil
	})
	waitFor(t, 60*time.Second, "the other kubo to unpin it", func() bool {
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
	waitFor(t, 60*time.Second, "the parent's pin in the child cluster and both its kubos", func() bool {
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
	waitFor(t, 30*time.Second, "the parent to report it pinned", func() bool {
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
