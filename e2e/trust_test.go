package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/restapi/client"
)

// followerNode is a real cluster-follow process following one cluster.
type followerNode struct {
	name string
	api  string
	env  []string
	proc *proc
}

func (f *followerNode) follow(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCmd(t, f.env, filepath.Join(binDir, "cluster-follow"), append([]string{f.name}, args...)...)
}

func (f *followerNode) client(t *testing.T) *client.Client {
	cl, err := client.New(f.api, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// startFollower inits name from ticket under base (shared by followers on
// the same "machine") with kubo k, and runs it.
func startFollower(t *testing.T, base, name, ticket string, k *kuboNode) *followerNode {
	t.Helper()
	f := &followerNode{name: name, api: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	f.env = append(fastEnv(f.api, k), "PINRING_FOLLOW_PATH="+base, "PINRING_MONITOR_INTERVAL=1s")
	out := mustRun(t, f.env, filepath.Join(binDir, "cluster-follow"), name, "init", ticket, "--ipfs-api", k.api)
	if !strings.Contains(out, "following cluster") {
		t.Fatalf("init: %s", out)
	}
	f.proc = start(t, f.env, filepath.Join(binDir, "cluster-follow"), name, "run")
	waitUp(t, f.proc, 60*time.Second, name+" API", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.client(t).ID(ctx)
		return err == nil
	})
	return f
}

// TestCuratorAndFollowers: a curator founds a private ring; two followers
// join from its ticket with their own kubos. Pins flow to the followers'
// kubos, a pin allocated to one follower lands there, and every write the
// followers attempt fails without changing anything.
func TestCuratorAndFollowers(t *testing.T) {
	ctx := context.Background()
	ks := []*kuboNode{startKubo(t), startKubo(t), startKubo(t)}
	curator := newPeer(t, ks[0])
	curator.env = append(curator.env, "PINRING_MONITOR_INTERVAL=1s")
	mustRun(t, curator.env, filepath.Join(binDir, "cluster-peer"), "--config", curator.dir, "keys", "new-secret")
	curator.start(t)
	ticket := curator.ticket(t)
	inspect := mustRun(t, nil, filepath.Join(binDir, "cluster-peer"), "keys", "ticket", "--inspect", ticket)
	if !strings.Contains(inspect, "private") || !strings.Contains(inspect, "z6Mk") {
		t.Fatalf("ticket --inspect:\n%s", inspect)
	}

	base := t.TempDir()
	fs := []*followerNode{startFollower(t, base, "ring-a", ticket, ks[1]), startFollower(t, base, "ring-b", ticket, ks[2])}
	var fids []string
	for _, f := range fs {
		id, err := f.client(t).ID(ctx)
		if err != nil || id.Role != api.RoleFollower {
			t.Fatalf("follower /id: %+v %v", id, err)
		}
		fids = append(fids, id.ID.String())
	}
	testkit.WaitFor(t, 60*time.Second, "the curator to get both followers' metrics", func() bool {
		ms, err := curator.client(t).Metrics(ctx, "freespace")
		return err == nil && len(ms) == 3
	})

	// Content lives in the curator's kubo; the followers' kubos fetch it.
	var cids []string
	for i := range 3 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("f%d", i))
		data := make([]byte, 64<<10)
		rand.Read(data)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cids = append(cids, strings.TrimSpace(ks[0].ipfs(t, "add", "-q", "--pin=false", path)))
	}
	for _, c := range cids[:2] { // everywhere
		curator.mustCtl(t, "pin", "add", c)
	}
	// One replica, allocated to the second follower: refused until the
	// curator admits it (a heartbeat alone earns no allocation).
	if out, err := curator.ctl(t, "pin", "add", "--rmin", "1", "--rmax", "1", "--allocations", fids[1], cids[2]); err == nil || !strings.Contains(out, "peers admit "+fids[1]) {
		t.Fatalf("a pin for a follower nobody admitted: %v\n%s", err, out)
	}
	if out, err := runCmd(t, nil, filepath.Join(binDir, "cluster-ctl"), "--host", fs[1].api, "peers", "admit", fids[1]); err == nil || !strings.Contains(out, "read-only") {
		t.Fatalf("a follower admitting itself: %v\n%s", err, out)
	}
	if out := curator.mustCtl(t, "peers", "admit", fids[1], "--note", "ring-b, a volunteer"); !strings.Contains(out, "admitted by") {
		t.Fatalf("peers admit:\n%s", out)
	}
	if out := curator.mustCtl(t, "peers", "admissions"); !strings.Contains(out, fids[1]+" | admitted") || !strings.Contains(out, "ring-b, a volunteer") {
		t.Fatalf("peers admissions:\n%s", out)
	}
	ls := curator.mustCtl(t, "peers", "ls")
	for i, want := range []string{"not admitted", "admitted"} {
		line := ""
		for l := range strings.Lines(ls) {
			if strings.HasPrefix(l, fids[i]) {
				line = l
			}
		}
		if !strings.Contains(line, "| "+want+" |") {
			t.Fatalf("peers ls line of follower %d: %q, want %q\n%s", i, line, want, ls)
		}
	}
	curator.mustCtl(t, "pin", "add", "--rmin", "1", "--rmax", "1", "--allocations", fids[1], cids[2])

	pinnedBy := func(k *kuboNode, c string) bool {
		out, err := runCmd(t, k.env, kubo, "pin", "ls", "--type=recursive", c)
		return err == nil && strings.Contains(out, c)
	}
	testkit.WaitFor(t, 90*time.Second, "both followers' kubos to pin the replicate-everywhere pins", func() bool {
		for _, k := range ks[1:] {
			for _, c := range cids[:2] {
				if !pinnedBy(k, c) {
					return false
				}
			}
		}
		return true
	})
	testkit.WaitFor(t, 60*time.Second, "the allocated follower to pin its pin", func() bool { return pinnedBy(ks[2], cids[2]) })
	if pinnedBy(ks[1], cids[2]) || pinnedBy(ks[0], cids[2]) {
		t.Fatal("a pin allocated to one follower was pinned elsewhere")
	}
	want := digests(t, curator)[0]
	if want.Pins != 3 {
		t.Fatalf("curator digest %+v", want)
	}

	// Every write a follower attempts fails with a reason and changes nothing.
	for _, f := range fs {
		for _, args := range [][]string{{"pin", "add", cids[2]}, {"pin", "add", "--rmin", "1", "--rmax", "1", cids[0]}, {"pin", "rm", cids[0]}} {
			out, err := runCmd(t, nil, filepath.Join(binDir, "cluster-ctl"), append([]string{"--host", f.api}, args...)...)
			if err == nil || !strings.Contains(out, "read-only") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Fatalf("%s: cluster-ctl %v at a follower: %v\n%s", f.name, args, err, out)
			}
		}
	}
	testkit.WaitFor(t, 30*time.Second, "every digest equal to the curator's", func() bool {
		for _, f := range fs {
			d, err := f.client(t).Digest(ctx)
			if err != nil || d != want {
				return false
			}
		}
		return digests(t, curator)[0] == want
	})

	// The follower's own views.
	status, err := fs[1].follow(t, "status")
	if err != nil || strings.Count(status, " pinned") < 3 || !strings.Contains(status, "3 pins: 3 pinned") {
		t.Fatalf("cluster-follow status: %v\n%s", err, status)
	}
	status, err = fs[0].follow(t, "status")
	if err != nil || !strings.Contains(status, "3 pins: 2 pinned, 1 remote") {
		t.Fatalf("cluster-follow status of the other follower: %v\n%s", err, status)
	}
	info, err := fs[0].follow(t, "info")
	if err != nil || !strings.Contains(info, "private") || !strings.Contains(info, "running:          yes") && !strings.Contains(info, "yes, local API") {
		t.Fatalf("cluster-follow info: %v\n%s", err, info)
	}
	list, err := runCmd(t, fs[0].env, filepath.Join(binDir, "cluster-follow"), "list")
	if err != nil || strings.Count(list, "running") != 2 {
		t.Fatalf("cluster-follow list: %v\n%s", err, list)
	}
}

// TestFollowerSaysItIsStarting: a follower whose curator is offline waits
// state.snapshot_wait for a snapshot; meanwhile `info` and `list` say it is
// starting and what it does, and `status` fails with that in one line.
func TestFollowerSaysItIsStarting(t *testing.T) {
	k := startKubo(t)
	curator := newPeer(t, k)
	curator.start(t)
	ticket := curator.ticket(t)
	curator.proc.kill(syscall.SIGTERM)
	if err := curator.proc.wait(30 * time.Second); err != nil {
		t.Fatalf("stopping the curator: %v", err)
	}

	base := t.TempDir()
	f := &followerNode{name: "quiet", api: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	f.env = append(fastEnv(f.api, k), "PINRING_FOLLOW_PATH="+base, "PINRING_STATE_SNAPSHOT_WAIT=8s")
	mustRun(t, f.env, filepath.Join(binDir, "cluster-follow"), f.name, "init", ticket, "--ipfs-api", k.api)
	f.proc = start(t, f.env, filepath.Join(binDir, "cluster-follow"), f.name, "run")
	var info string
	testkit.WaitFor(t, 30*time.Second, "info to say the follower is starting", func() bool {
		info, _ = f.follow(t, "info")
		return strings.Contains(info, "starting")
	})
	if !strings.Contains(info, "asking the cluster's peers for a snapshot") {
		t.Fatalf("info while starting:\n%s", info)
	}
	if list := mustRun(t, f.env, filepath.Join(binDir, "cluster-follow"), "list"); !strings.Contains(list, "starting") {
		t.Fatalf("list while starting:\n%s", list)
	}
	out, err := f.follow(t, "status")
	if err == nil || !strings.Contains(out, "not ready yet") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("status while starting: %v\n%s", err, out)
	}

	// Without a snapshot it goes on through the DAG, and is running.
	testkit.WaitFor(t, 60*time.Second, "the follower to be ready", func() bool {
		info, _ = f.follow(t, "info")
		return strings.Contains(info, "running:") && strings.Contains(info, "yes")
	})
	if _, err := f.follow(t, "status"); err != nil {
		t.Fatalf("status once ready: %v", err)
	}
}
