package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/ipfsclient"
)

// TestSinglePeer drives one real kubo and one peer through the whole
// first slice: pin with cluster-ctl, kubo pins it, recover undoes a pin rm
// behind the cluster's back, unpin, durability across SIGKILL, clean
// shutdown on SIGINT, and readable errors.
func TestSinglePeer(t *testing.T) {
	k := startKubo(t)
	p := newPeer(t, k)
	p.start(t)
	ctx := context.Background()

	ipfs := kuboClient(t, k)
	block := func(i int) api.Cid {
		c, err := ipfs.BlockPut(ctx, fmt.Appendf(nil, "pinring e2e block %d", i), "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	kuboHas := func(c api.Cid) bool {
		st, err := ipfs.PinLsCid(ctx, c)
		return err == nil && st == api.IPFSPinRecursive
	}

	c1 := block(1)
	if kuboHas(c1) {
		t.Fatal("block/put pinned the block; the test would prove nothing")
	}

	t.Run("pin through cluster-ctl", func(t *testing.T) {
		out := p.mustCtl(t, "pin", "add", "--wait", "--wait-timeout", "60s", "--name", "first", "--metadata", "k=v", c1.String())
		if !strings.Contains(out, "PINNED") {
			t.Fatalf("pin add output does not say PINNED:\n%s", out)
		}
		if !kuboHas(c1) {
			t.Fatal("kubo does not have the pin")
		}
		if ls := k.ipfs(t, "pin", "ls", "--type=recursive"); !strings.Contains(ls, c1.String()) {
			t.Fatalf("ipfs pin ls misses %s:\n%s", c1, ls)
		}
		pins, err := decodeAll[api.Pin](p.mustCtl(t, "--json", "pin", "ls"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pins) != 1 || pins[0].Name != "first" || pins[0].Metadata["k"] != "v" {
			t.Fatalf("pin ls = %+v", pins)
		}
	})

	t.Run("recover undoes ipfs pin rm", func(t *testing.T) {
		k.ipfs(t, "pin", "rm", c1.String())
		if kuboHas(c1) {
			t.Fatal("pin rm did not remove")
		}
		testkit.WaitFor(t, 30*time.Second, "the peer to re-pin what kubo lost", func() bool { return kuboHas(c1) })
	})

	t.Run("unpin", func(t *testing.T) {
		c2 := block(2)
		p.mustCtl(t, "pin", "add", "--wait", "--wait-timeout", "60s", c2.String())
		p.mustCtl(t, "pin", "rm", "--wait", "--wait-timeout", "60s", c2.String())
		if kuboHas(c2) {
			t.Fatal("kubo still pins an unpinned CID")
		}
		if _, err := p.client(t).Allocation(ctx, c2); err == nil {
			t.Fatal("unpinned CID still in the pinset")
		}
	})

	t.Run("wait", func(t *testing.T) {
		// add --wait returns once kubo holds the added root.
		file := filepath.Join(t.TempDir(), "waited")
		if err := os.WriteFile(file, []byte("added with --wait"), 0o600); err != nil {
			t.Fatal(err)
		}
		root, err := api.ParseCid(strings.TrimSpace(p.mustCtl(t, "add", "-q", "--wait", "--wait-timeout", "60s", file)))
		if err != nil {
			t.Fatal(err)
		}
		if !kuboHas(root) {
			t.Fatal("add --wait returned before kubo pinned the root")
		}
		p.mustCtl(t, "pin", "rm", "--no-status", root.String())
		// Content nobody has can never be pinned: --wait gives up, non-zero.
		h, _ := mh.Sum([]byte("no peer has this"), mh.SHA2_256, -1)
		missing := cid.NewCidV1(cid.Raw, h).String()
		out, err := p.ctl(t, "pin", "add", "--wait", "--wait-timeout", "2s", missing)
		if err == nil || !strings.Contains(out, "gave up waiting") {
			t.Fatalf("pin add --wait of missing content: %v\n%s", err, out)
		}
		p.mustCtl(t, "pin", "rm", "--no-status", missing)
	})

	t.Run("ipfsclient against kubo", func(t *testing.T) {
		st, err := ipfs.RepoStat(ctx)
		if err != nil || st.RepoSize == 0 || st.StorageMax == 0 {
			t.Fatalf("repo stat = %+v, %v", st, err)
		}
		data := []byte("block stat me")
		c, err := ipfs.BlockPut(ctx, data, "raw", "sha2-256")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := ipfs.BlockStat(ctx, c); err != nil || n != len(data) {
			t.Fatalf("block stat = %d, %v", n, err)
		}
		id, err := ipfs.ID(ctx)
		if err != nil || id.ID == "" || len(id.Addresses) == 0 {
			t.Fatalf("id = %+v, %v", id, err)
		}
		// Direct pins, and pin ls with a type filter.
		if err := ipfs.Pin(ctx, c, api.PinModeDirect, nil); err != nil {
			t.Fatal(err)
		}
		out := make(chan api.IPFSPinInfo)
		go ipfs.PinLs(ctx, "direct", out)
		found := false
		for p := range out {
			found = found || p.Cid.Equals(c.Cid) && p.Type == api.IPFSPinDirect
		}
		if !found {
			t.Fatal("pin ls --type=direct misses the direct pin")
		}
		// pin update keeps the old pin.
		from, to := block(50), block(51)
		if err := ipfs.Pin(ctx, from, api.PinModeRecursive, nil); err != nil {
			t.Fatal(err)
		}
		if err := ipfs.PinUpdate(ctx, from, to); err != nil {
			t.Fatal(err)
		}
		if !kuboHas(from) || !kuboHas(to) {
			t.Fatal("pin update did not leave both pinned")
		}
		for _, x := range []api.Cid{c, from, to} {
			if err := ipfs.Unpin(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		// kubo's own words reach the caller.
		err = ipfs.Unpin(ctx, from)
		var ke *ipfsclient.KuboError
		if !errors.As(err, &ke) || ke.Message == "" || !strings.Contains(err.Error(), "pin") {
			t.Fatalf("unpinning an unpinned CID: %v", err)
		}
	})

	t.Run("readable errors", func(t *testing.T) {
		out, err := p.ctl(t, "pin", "add", "not-a-cid")
		var ee *exec.ExitError
		if !errorAs(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("bad CID exit: %v", err)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, "not-a-cid") {
			t.Fatalf("want one line naming the CID, got:\n%s", out)
		}
		out, err = p.ctl(t, "pin", "add", "--rmin", "3", "--rmax", "2", c1.String())
		if err == nil || !strings.Contains(out, "replication") {
			t.Fatalf("rmin > rmax accepted: %v %s", err, out)
		}
	})

	// Durability: every pin acknowledged before SIGKILL is there after.
	var acked []api.Cid
	t.Run("acknowledged pins survive SIGKILL", func(t *testing.T) {
		cl := p.client(t)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					c := block(1000 + w*100 + i)
					if _, err := cl.Pin(ctx, c, api.PinOptions{Name: "bulk"}); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = append(acked, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		before, err := cl.Digest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.proc.kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.proc.wait(10 * time.Second)
		p.start(t)
		cl = p.client(t)
		after, err := cl.Digest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("digest changed across SIGKILL: %+v -> %+v", before, after)
		}
		for _, c := range acked {
			if _, err := cl.Allocation(ctx, c); err != nil {
				t.Fatalf("acknowledged pin %s lost: %v", c, err)
			}
		}
		if after.Pins != uint64(len(acked))+1 {
			t.Fatalf("%d pins after restart, want %d", after.Pins, len(acked)+1)
		}
		testkit.WaitFor(t, 60*time.Second, "every pin pinned after restart", func() bool {
			out, err := p.ctl(t, "--json", "status", "--filter", "pinned")
			all, derr := decodeAll[api.GlobalPinInfo](out)
			return err == nil && derr == nil && len(all) == len(acked)+1
		})
	})

	t.Run("SIGINT stops the peer cleanly", func(t *testing.T) {
		if err := p.proc.kill(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := p.proc.wait(30 * time.Second); err != nil {
			p.proc.kill(syscall.SIGQUIT) // goroutine dump into the log
			p.proc.wait(5 * time.Second)
			t.Fatalf("peer exit after SIGINT: %v", err)
		}
	})
}

func errorAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}
