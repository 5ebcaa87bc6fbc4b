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
	"github.com/pinring/pinring/internal/testkit"
)

// TestPinningServiceWithKuboClient: a separate kubo uses the cluster as a
// remote pinning service with kubo's own client (`ipfs pin remote`):
// add (waiting until pinned), ls over more than one page, rm — and the
// cluster's state follows.
func TestPinningServiceWithKuboClient(t *testing.T) {
	ctx := context.Background()
	clusterKubo, user := startKubo(t), startKubo(t)
	p := newPeer(t, clusterKubo)
	svc := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.env = append(p.env, "PINRING_PINSVC_LISTEN="+svc)
	p.start(t)

	user.ipfs(t, "pin", "remote", "service", "add", "pinring", "http://"+svc, "any-token")
	const n = 12 // the client asks for 10 a page
	var cids []string
	for i := range n {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("f%d", i))
		data := make([]byte, 4<<10)
		rand.Read(data)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := strings.TrimSpace(user.ipfs(t, "add", "-q", path))
		cids = append(cids, c)
		// Blocks until the service says pinned: the cluster's kubo fetches
		// the data from the origins the client sends (its own addresses).
		out, err := runCmd(t, user.env, kubo, "pin", "remote", "add", "--service=pinring", fmt.Sprintf("--name=file-%02d", i), c)
		if err != nil || !strings.Contains(out, "pinned") {
			t.Fatalf("pin remote add: %v\n%s", err, out)
		}
	}
	ls := user.ipfs(t, "pin", "remote", "ls", "--service=pinring")
	for _, c := range cids {
		if !strings.Contains(ls, c) {
			t.Fatalf("pin remote ls is missing %s:\n%s", c, ls)
		}
	}
	if lines := strings.Count(strings.TrimSpace(ls), "\n") + 1; lines != n {
		t.Fatalf("pin remote ls: %d lines, want %d:\n%s", lines, n, ls)
	}
	if one := user.ipfs(t, "pin", "remote", "ls", "--service=pinring", "--name=file-03"); !strings.Contains(one, cids[3]) || strings.Count(strings.TrimSpace(one), "\n") != 0 {
		t.Fatalf("ls --name=file-03:\n%s", one)
	}
	cl := p.client(t)
	count := func() int {
		k := 0
		cl.Allocations(ctx, "", func(api.Pin) error { k++; return nil })
		return k
	}
	if got := count(); got != n {
		t.Fatalf("the cluster holds %d pins, want %d", got, n)
	}
	for _, c := range cids {
		if out := clusterKubo.ipfs(t, "pin", "ls", "--type=recursive", c); !strings.Contains(out, c) {
			t.Fatalf("the cluster's kubo does not pin %s", c)
		}
	}

	user.ipfs(t, "pin", "remote", "rm", "--service=pinring", "--name=file-00")
	if got := count(); got != n-1 {
		t.Fatalf("after rm the cluster holds %d pins, want %d", got, n-1)
	}
	if _, err := cl.Allocation(ctx, mustCid(t, cids[0])); err == nil {
		t.Fatal("the removed pin is still in the cluster")
	}
	testkit.WaitFor(t, 30*time.Second, "the cluster's kubo to unpin the removed CID", func() bool {
		out, err := runCmd(t, clusterKubo.env, kubo, "pin", "ls", "--type=recursive", cids[0])
		return err != nil || !strings.Contains(out, cids[0])
	})
	if ls := user.ipfs(t, "pin", "remote", "ls", "--service=pinring"); strings.Contains(ls, cids[0]) {
		t.Fatalf("ls still shows the removed pin:\n%s", ls)
	}
}

func mustCid(t *testing.T, s string) api.Cid {
	t.Helper()
	c, err := api.ParseCid(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
