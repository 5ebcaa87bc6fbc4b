package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// lab is a small network built from namespaces: a "router" namespace with
// a bridge for the home LAN (10.77.1.0/24) and a WAN link to a "cloud"
// namespace (10.77.2.0/24); each home namespace hangs off the bridge.
type lab struct {
	t      *testing.T
	id     string
	router string
	ifaces []string // the router's interfaces: down = the router reboots
}

func (l *lab) ns(name string) string { return "pr" + l.id + "-" + name }

func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLab builds the network, or skips the test with the reason when
// network namespaces cannot be made here.
func newLab(t *testing.T, homes int) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: the router-reboot test builds network namespaces (ip netns), which needs root; CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: the router-reboot test needs iproute2's ip command")
	}
	b := make([]byte, 2)
	rand.Read(b)
	l := &lab{t: t, id: hex.EncodeToString(b)}
	l.router = l.ns("rt")
	names := []string{l.router, l.ns("cloud")}
	for i := 1; i <= homes; i++ {
		names = append(names, l.ns(fmt.Sprintf("home%d", i)))
	}
	for _, n := range names {
		mustIP(t, "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		mustIP(t, "-n", n, "link", "set", "lo", "up")
	}
	mustIP(t, "-n", l.router, "link", "add", "br0", "type", "bridge")
	mustIP(t, "-n", l.router, "addr", "add", "10.77.1.1/24", "dev", "br0")
	mustIP(t, "-n", l.router, "link", "set", "br0", "up")
	if out, err := exec.Command("ip", "netns", "exec", l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip forwarding in the router: %v %s", err, out)
	}
	veth := func(ns, routerSide, hostSide, addr, gw string, bridged bool, routerAddr string) {
		mustIP(t, "link", "add", routerSide, "type", "veth", "peer", "name", hostSide)
		mustIP(t, "link", "set", routerSide, "netns", l.router)
		mustIP(t, "link", "set", hostSide, "netns", ns)
		if bridged {
			mustIP(t, "-n", l.router, "link", "set", routerSide, "master", "br0")
		} else {
			mustIP(t, "-n", l.router, "addr", "add", routerAddr, "dev", routerSide)
		}
		mustIP(t, "-n", l.router, "link", "set", routerSide, "up")
		mustIP(t, "-n", ns, "addr", "add", addr, "dev", hostSide)
		mustIP(t, "-n", ns, "link", "set", hostSide, "up")
		mustIP(t, "-n", ns, "route", "add", "default", "via", gw)
		l.ifaces = append(l.ifaces, routerSide)
	}
	veth(l.ns("cloud"), "pr"+l.id+"w0", "pr"+l.id+"w1", "10.77.2.2/24", "10.77.2.1", false, "10.77.2.1/24")
	for i := 1; i <= homes; i++ {
		veth(l.ns(fmt.Sprintf("home%d", i)), fmt.Sprintf("pr%sh%da", l.id, i), fmt.Sprintf("pr%sh%db", l.id, i),
			fmt.Sprintf("10.77.1.%d/24", 10+i), "10.77.1.1", true, "")
	}
	l.ifaces = append(l.ifaces, "br0")
	return l
}

// routerLinks takes every router interface down (a reboot) or up.
func (l *lab) routerLinks(up bool) {
	state := "down"
	if up {
		state = "up"
	}
	for _, i := range l.ifaces {
		mustIP(l.t, "-n", l.router, "link", "set", i, state)
	}
}

// site is one machine of the lab: a kubo and a cluster peer in a namespace.
type site struct {
	name, ns string
	ipfsEnv  []string
	dir      string
	env      []string
	kubo     *proc
	peer     *proc
	id       peer.ID
}

func (s *site) run(t *testing.T, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	return runCmd(t, env, "ip", append([]string{"netns", "exec", s.ns, bin}, args...)...)
}

func (s *site) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return s.run(t, nil, filepath.Join(binDir, "cluster-ctl"), append([]string{"--host", "127.0.0.1:9094", "-t", "20s"}, args...)...)
}

func (s *site) ctlJSON(t *testing.T, out any, args ...string) error {
	t.Helper()
	b, err := s.ctl(t, append([]string{"--json"}, args...)...)
	if err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return json.Unmarshal([]byte(b), out)
}

// ctlList runs a listing command and decodes its stream of objects.
func ctlList[T any](t *testing.T, s *site, args ...string) ([]T, error) {
	t.Helper()
	b, err := s.ctl(t, append([]string{"--json"}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, b)
	}
	return decodeAll[T](b)
}

func (s *site) startKubo(t *testing.T, storageMax string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubo")
	s.ipfsEnv = []string{"IPFS_PATH=" + path}
	mustRun(t, s.ipfsEnv, kubo, "init", "--profile=test", "--empty-repo")
	for _, kv := range [][]string{
		{"Addresses.API", "/ip4/127.0.0.1/tcp/5001"},
		{"Addresses.Gateway", ""},
		{"--json", "Addresses.Swarm", `["/ip4/0.0.0.0/tcp/4001"]`},
		{"--json", "Bootstrap", "[]"},
		{"Routing.Type", "none"},
		{"--json", "Discovery.MDNS.Enabled", "false"},
		{"Datastore.StorageMax", storageMax},
	} {
		mustRun(t, s.ipfsEnv, kubo, append([]string{"config"}, kv...)...)
	}
	s.kubo = start(t, s.ipfsEnv, "ip", "netns", "exec", s.ns, kubo, "daemon")
	testkit.WaitFor(t, 60*time.Second, s.name+"'s kubo", func() bool {
		_, err := os.Stat(filepath.Join(path, "api"))
		return err == nil
	})
}

// The knobs a home cluster would run with, shortened where a test cannot
// wait minutes; p2p.reconnect_max keeps its default (30 s).
// auditKind matches what differs between two failed audits of one kind:
// peer IDs, CIDs, numbers.
var auditKind = regexp.MustCompile(`12D3KooW\w+|Qm\w{44}|baf\w{50,}|[0-9][0-9.:TZ+-]*`)

var homeEnv = []string{
	"PINRING_API_LISTEN=127.0.0.1:9094",
	"PINRING_IPFS_API=/ip4/127.0.0.1/tcp/5001",
	"PINRING_P2P_LISTEN=/ip4/0.0.0.0/tcp/9096",
	"PINRING_MONITOR_INTERVAL=2s",
	"PINRING_REPAIR_GRACE=40s",
	"PINRING_REPAIR_INTERVAL=2s",
	"PINRING_TRACKER_RECOVER_INTERVAL=5s",
	"PINRING_TRACKER_RETRY_BACKOFF=500ms",
	"PINRING_CLUSTER_ANNOUNCE_INTERVAL=2s",
	"PINRING_STATE_REBROADCAST_INTERVAL=2s",
	"PINRING_AUDIT_INTERVAL=5s", // the writers audit each other and the follower all along
	"PINRING_AUDIT_GRACE=10s",
}

func (s *site) initPeer(t *testing.T, args ...string) {
	t.Helper()
	s.dir = filepath.Join(t.TempDir(), "peer")
	s.env = append(append([]string{}, homeEnv...), "PINRING_CLUSTER_PEERNAME="+s.name)
	if out, err := s.run(t, s.env, filepath.Join(binDir, "cluster-peer"), append([]string{"--config", s.dir, "init"}, args...)...); err != nil {
		t.Fatalf("init %s: %v\n%s", s.name, err, out)
	}
}

func (s *site) startPeer(t *testing.T) {
	t.Helper()
	s.peer = start(t, s.env, "ip", "netns", "exec", s.ns, filepath.Join(binDir, "cluster-peer"), "--config", s.dir, "daemon")
	testkit.WaitFor(t, 60*time.Second, s.name+"'s peer API", func() bool {
		var id api.ID
		if s.ctlJSON(t, &id, "id") != nil {
			return false
		}
		s.id = id.ID
		return true
	})
}

func (s *site) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	for _, p := range []*proc{s.peer, s.kubo} {
		if err := p.kill(sig); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRouterReboot: a cloud peer with a small disk and three home peers
// behind a router. The router reboots twice (its links down for 30 s),
// with writes on both sides meanwhile; a home peer sleeps (SIGSTOP) and
// wakes; another dies for good. Nothing but the network is touched by the
// test, and every pin ends at its replication factor on live peers with
// equal digests everywhere. The sleeper is an admitted follower (no write
// key), audited every 5 s by the writers throughout: an honest run, so no
// audit may cost it its admission — asleep it is not audited at all.
func TestRouterReboot(t *testing.T) {
	l := newLab(t, 3)
	cloud := &site{name: "cloud", ns: l.ns("cloud")}
	homes := []*site{}
	for i := 1; i <= 3; i++ {
		homes = append(homes, &site{name: fmt.Sprintf("home%d", i), ns: l.ns(fmt.Sprintf("home%d", i))})
	}
	all := append([]*site{cloud}, homes...)

	// The cloud VM's disk: about 1 MiB more than its empty repo.
	cloud.startKubo(t, "1200000B")
	for _, h := range homes {
		h.startKubo(t, "10GB")
	}
	cloud.initPeer(t)
	cloud.startPeer(t)
	ticket, err := cloud.run(t, cloud.env, filepath.Join(binDir, "cluster-peer"), "--config", cloud.dir, "keys", "ticket")
	if err != nil || !strings.Contains(mustRun(t, nil, filepath.Join(binDir, "cluster-peer"), "keys", "ticket", "--inspect", strings.TrimSpace(ticket)), "10.77.2.2") {
		t.Fatalf("ticket: %v %s", err, ticket)
	}
	for i, h := range homes {
		h.initPeer(t, "--ticket", strings.TrimSpace(ticket))
		if i < 2 {
			if out, err := h.run(t, nil, filepath.Join(binDir, "cluster-peer"), "--config", h.dir, "keys", "import-write-key", filepath.Join(cloud.dir, "write.key")); err != nil {
				t.Fatalf("import-write-key: %v %s", err, out)
			}
		}
		h.startPeer(t)
	}
	if out, err := cloud.ctl(t, "peers", "admit", "--note", "home follower", homes[2].id.String()); err != nil {
		t.Fatalf("admitting the follower: %v %s", err, out)
	}
	live := map[peer.ID]bool{}
	for _, s := range all {
		live[s.id] = true
	}

	allConnected := func(sites []*site) bool {
		for _, s := range sites {
			var h api.Health
			if s.ctlJSON(t, &h, "health") != nil || h.ConnectedPeers < len(sites)-1 {
				return false
			}
		}
		return true
	}
	sameDigest := func(sites []*site, pins uint64) bool {
		var first api.StateDigest
		for i, s := range sites {
			var d api.StateDigest
			if s.ctlJSON(t, &d, "state", "digest") != nil || d.Pins != pins || i > 0 && d != first {
				return false
			}
			first = d
		}
		return true
	}
	// atRF: every pin has rmax allocations, all on live peers, all pinned.
	atRF := func(from *site, pins int) bool {
		gs, err := ctlList[api.GlobalPinInfo](t, from, "status")
		if err != nil || len(gs) != pins {
			return false
		}
		allocs, err := ctlList[api.Pin](t, from, "pin", "ls")
		if err != nil {
			return false
		}
		rmax := map[string]int{}
		for _, p := range allocs {
			rmax[p.Cid.String()] = p.ReplicationFactorMax
		}
		for _, g := range gs {
			if len(g.Allocations) != rmax[g.Cid.String()] {
				return false
			}
			for _, a := range g.Allocations {
				if !live[a] || g.PeerMap[a.String()].Status != api.StatusPinned {
					return false
				}
			}
		}
		return true
	}
	testkit.WaitFor(t, 90*time.Second, "every peer connected to the three others", func() bool { return allConnected(all) })

	// Content lives in home1's kubo; every kubo fetches what it is given.
	addContent := func(s *site, i int) string {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("c%d", i))
		data := make([]byte, 400<<10)
		rand.Read(data)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := s.run(t, s.ipfsEnv, kubo, "add", "-q", "--pin=false", path)
		if err != nil {
			t.Fatalf("ipfs add: %v %s", err, out)
		}
		return strings.TrimSpace(out)
	}
	pin := func(s *site, c string, args ...string) {
		t.Helper()
		if out, err := s.ctl(t, append(append([]string{"pin", "add"}, args...), c)...); err != nil {
			t.Fatalf("pin add at %s: %v\n%s", s.name, err, out)
		}
	}
	pins := 0
	for i := range 8 {
		pin(homes[0], addContent(homes[0], i), "--rmin", "2", "--rmax", "2")
		pins++
	}
	// A pin the user puts on the cloud peer; then the VM's own data fills
	// its small disk: it reports itself full and the writers move the pin
	// off it.
	onCloudPin := addContent(homes[0], 100)
	pin(homes[0], onCloudPin, "--rmin", "1", "--rmax", "1", "--allocations", cloud.id.String())
	pins++
	testkit.WaitFor(t, 90*time.Second, "the cloud peer to pin its pin", func() bool {
		gs, err := ctlList[api.GlobalPinInfo](t, cloud, "status", onCloudPin)
		return err == nil && len(gs) == 1 && gs[0].PeerMap[cloud.id.String()].Status == api.StatusPinned
	})
	local := filepath.Join(t.TempDir(), "vm-data")
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cloud.run(t, cloud.ipfsEnv, kubo, "add", "-q", local); err != nil { // pinned by kubo itself
		t.Fatalf("filling the cloud disk: %v %s", err, out)
	}
	testkit.WaitFor(t, 120*time.Second, "the cloud peer full, its pin moved off, every pin at its replication factor", func() bool {
		full := false
		var ms []api.Metric
		if cloud.ctlJSON(t, &ms, "health", "metrics", "full") == nil {
			for _, m := range ms {
				full = full || m.Peer == cloud.id && m.Value == "true"
			}
		}
		ps, err := ctlList[api.Pin](t, cloud, "pin", "ls", onCloudPin)
		moved := err == nil && len(ps) == 1 && len(ps[0].Allocations) == 1 && ps[0].Allocations[0] != cloud.id
		return full && moved && atRF(cloud, pins)
	})

	type figure struct{ connected, digests, rf time.Duration }
	var figures []figure
	for round := 1; round <= 2; round++ {
		// The content lives at home; the cloud (whose kubo collects its
		// garbage while full) pins a CID it will fetch once healed.
		homeCid, cloudCid := addContent(homes[0], 200+round), addContent(homes[0], 300+round)
		l.routerLinks(false)
		// Writes on both sides of the split, while the peers still have
		// each other's metrics (valid 6 s): one replica now, two once
		// healed. --no-status: the status query would wait up to 5 s for
		// the peers across the split, long enough for the second write to
		// find every metric from the other side expired.
		pin(homes[0], homeCid, "--no-status", "--rmin", "1", "--rmax", "2")
		pin(cloud, cloudCid, "--no-status", "--rmin", "1", "--rmax", "2")
		pins += 2
		time.Sleep(30 * time.Second)
		back := time.Now()
		l.routerLinks(true)
		var f figure
		testkit.WaitFor(t, 120*time.Second, "every peer connected again", func() bool { return allConnected(all) })
		f.connected = time.Since(back)
		testkit.WaitFor(t, 120*time.Second, "equal digests with both sides' writes", func() bool { return sameDigest(all, uint64(pins)) })
		f.digests = time.Since(back)
		testkit.WaitFor(t, 180*time.Second, "every pin at its replication factor", func() bool { return atRF(cloud, pins) })
		f.rf = time.Since(back)
		figures = append(figures, f)
		t.Logf("router reboot %d: link back → all connected %.1fs, equal digests %.1fs, every pin at its replication factor %.1fs",
			round, f.connected.Seconds(), f.digests.Seconds(), f.rf.Seconds())
	}

	// A laptop sleeps and wakes: no command, it catches up.
	sleeper := homes[2]
	sleeper.signal(t, syscall.SIGSTOP)
	pin(homes[0], addContent(homes[0], 400), "--rmin", "2", "--rmax", "2")
	pins++
	time.Sleep(20 * time.Second)
	sleeper.signal(t, syscall.SIGCONT)
	woke := time.Now()
	testkit.WaitFor(t, 120*time.Second, "the sleeper back with equal digests", func() bool {
		return allConnected(all) && sameDigest(all, uint64(pins))
	})
	testkit.WaitFor(t, 180*time.Second, "every pin at its replication factor after the sleep", func() bool { return atRF(cloud, pins) })
	t.Logf("sleeping peer: woke → connected, equal digests and every pin at its replication factor in %.1fs", time.Since(woke).Seconds())

	// PINRING_E2E_SOAK=1h (with go test -timeout 2h): that much more
	// honest running before the kill, audited all along — a pin every
	// minute, the router rebooting (30 s down) halfway — for the figure
	// "false failures over an hour"; the checks at the end cover it.
	if soak, _ := time.ParseDuration(os.Getenv("PINRING_E2E_SOAK")); soak > 0 {
		start, rebooted := time.Now(), false
		for i := 0; time.Since(start) < soak; i++ {
			pin(homes[0], addContent(homes[0], 1000+i), "--no-status", "--rmin", "2", "--rmax", "2")
			pins++
			if !rebooted && time.Since(start) > soak/2 {
				rebooted = true
				l.routerLinks(false)
				time.Sleep(30 * time.Second)
				l.routerLinks(true)
				testkit.WaitFor(t, 120*time.Second, "every peer connected after the soak's reboot", func() bool { return allConnected(all) })
				t.Logf("soak: router rebooted %s in", time.Since(start).Round(time.Second))
			}
			time.Sleep(time.Minute)
		}
		testkit.WaitFor(t, 180*time.Second, "every pin at its replication factor after the soak", func() bool {
			return sameDigest(all, uint64(pins)) && atRF(cloud, pins)
		})
		t.Logf("soak: %s of honest running, %d pins", time.Since(start).Round(time.Second), pins)
	}

	// A home peer dies for good: its pins move to the live peers.
	dead := homes[1]
	dead.signal(t, syscall.SIGKILL)
	delete(live, dead.id)
	died := time.Now()
	rest := []*site{cloud, homes[0], homes[2]}
	testkit.WaitFor(t, 240*time.Second, "every pin at its replication factor on the live peers", func() bool {
		return atRF(cloud, pins) && sameDigest(rest, uint64(pins))
	})
	t.Logf("dead peer: every pin back at its replication factor %.1fs after the kill (repair.grace 40s)", time.Since(died).Seconds())

	// The cloud peer, full all along, was given nothing new.
	gs, err := ctlList[api.GlobalPinInfo](t, cloud, "status")
	if err != nil {
		t.Fatal(err)
	}
	onCloud := 0
	for _, g := range gs {
		for _, a := range g.Allocations {
			if a == cloud.id {
				onCloud++
			}
		}
	}
	var ms []api.Metric
	if err := cloud.ctlJSON(t, &ms, "health", "metrics", "freespace"); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Peer == cloud.id {
			free, _ := strconv.ParseUint(m.Value, 10, 64)
			t.Logf("cloud peer: %d pins allocated, %d bytes free", onCloud, free)
		}
	}
	if onCloud != 0 {
		t.Errorf("the full cloud peer holds %d pins", onCloud)
	}
	// The honest follower was never suspended; what the writers' audits
	// found of each peer, false failures (during the splits) included.
	adm, err := cloud.ctl(t, "peers", "admissions")
	if err != nil || strings.Contains(adm, "suspended") || !strings.Contains(adm, homes[2].id.String()+" | admitted") {
		t.Errorf("admissions after the honest run: %v\n%s", err, adm)
	}
	for _, s := range []*site{cloud, homes[0]} {
		var h api.Health
		if err := s.ctlJSON(t, &h, "health"); err != nil {
			t.Fatal(err)
		}
		for _, p := range h.ClusterPeers {
			t.Logf("audits by %s of %s: %s", s.name, p.Peername, p.Audit)
			if live[p.ID] && strings.HasPrefix(p.Audit, "FAILING") {
				t.Errorf("%s says live, honest %s is failing its audits: %s", s.name, p.Peername, p.Audit)
			}
		}
	}
	// What the failed audits said, by kind; no honest replica may have
	// been lost to them (a replica failing fail_rounds audits in a row
	// moves): splits and reboots are silence, which costs nothing.
	kinds := map[string]int{}
	for _, s := range all {
		for _, line := range strings.Split(s.peer.log.String(), "\n") {
			if strings.Contains(line, "replica lost:") {
				t.Errorf("%s: an honest replica lost to audits: %.300s", s.name, line)
			}
			if _, why, ok := strings.Cut(line, " failed: "); ok && strings.Contains(line, "audit of ") {
				kinds[auditKind.ReplaceAllString(why, "…")]++
			}
		}
	}
	for why, n := range kinds {
		t.Logf("failed audits: %d × %.200s", n, why)
	}
	for i, f := range figures {
		if f.connected > 30*time.Second || f.digests > 30*time.Second || f.rf > 30*time.Second {
			t.Logf("note: reboot %d is over the 30 s aim (figures above)", i+1)
		}
	}
}
