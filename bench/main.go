// Command bench starts a cluster of real cluster-peer processes on loopback
// and measures replication: ingestion through one peer's REST API until
// every peer holds the same pinset, and the catch-up time of a new empty
// peer. Each peer gets a stub kubo served by this program (instant answers)
// so the figures are about Pinring's replication, not kubo's pinning.
//
//	go run ./bench -peers 3 -pins 100000
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/fakekubo"
	"github.com/pinring/pinring/restapi/client"
)

// pprofFor maps a peer name to a profiler address (-pprof).
var pprofFor = map[string]string{}

var (
	kuboIngestOnly bool
	kuboTimeline   bool
	kuboNice       int
	keep           bool
	hold           time.Duration
	catchup        string
	clientKind     string
)

type peerProc struct {
	kubo *fakekubo.Kubo
	name string
	cmd  *exec.Cmd
	api  string
	cl   *client.Client
}

func main() {
	peers := flag.Int("peers", 3, "peers in the cluster")
	pins := flag.Int("pins", 100000, "pins to ingest")
	clients := flag.Int("clients", 16, "parallel REST clients")
	bin := flag.String("bin", "bin", "directory holding cluster-peer")
	flag.DurationVar(&hold, "hold", 0, "keep the cluster running this long after measuring (for profiles)")
	flag.StringVar(&catchup, "catchup", "snapshot,dag", "how new peers catch up, measured in turn: snapshot (the default path), dag (state.snapshot_wait=0); \"\": none")
	flag.StringVar(&clientKind, "client", "raw", "REST clients: raw (one HTTP/1.1 keep-alive connection each, response read whole and checked, JSON not decoded) or go (restapi/client, decodes every answered Pin)")
	times := flag.Int("runs", 1, "measure this many times, each on a new cluster, and print the spread of the ingestion figures")
	kuboBin := flag.String("kubo", "", "run the curator's bulk pin on real kubo daemons started from this ipfs binary (e.g. bin/ipfs): -pins random blocks in every kubo, kubo alone pinning another -pins twice over as the ceiling, then the peers at rmin=rmax=2, a new follower, and a SIGKILLed peer's repair (-pins 20000 is the issue's run)")
	flag.BoolVar(&kuboTimeline, "kubo-timeline", false, "with -kubo: print, every half second of the bulk pin, how many pins each peer's kubo has acknowledged")
	flag.BoolVar(&keep, "keep", false, "keep the peers' directories and logs (printed at the end) instead of removing them")
	flag.IntVar(&kuboNice, "kubo-nice", 0, "with -kubo: run the peers and this program (the clients) at this nice value, the kubos at 0: does CPU priority help kubo pin while the peers ingest?")
	flag.BoolVar(&kuboIngestOnly, "kubo-ingest-only", false, "with -kubo: stop once every replica is pinned (no follower, no SIGKILL)")
	churn := flag.Int("churn", 0, "measure the store under churn instead (issue 27): -pins live pins, then this many operations (unpin and pin again, new options, pin update to a new CID) that keep the pinset's size, printing every peer's directory on disk after each tenth; then the -catchup paths")
	repair := flag.Bool("repair", false, "measure repair instead: SIGKILL a peer holding -pins pins (rmin=rmax=2) and time until each is on two live peers")
	var extra stringList
	flag.Var(&extra, "env", "KEY=VALUE for every peer (repeatable), e.g. -env PINRING_MONITOR_INTERVAL=2s")
	pprofAt := flag.String("pprof", "", "name=host:port[,name=host:port]: serve those peers' Go profilers (e.g. peer0=127.0.0.1:6060); with -ring, ring=host:port serves the ring process's")
	cpuprofile := flag.String("cpuprofile", "", "write this program's own CPU profile (load generator and stub kubos; with -ring, the ring's process) to a file")
	ringSizes := flag.String("ring", "", "run the ring harness instead (issue 28): rings of these many followers in turn, e.g. 10,100,1000 (1,000 takes about 8 minutes and both cores of a 2-core machine) (in-process peers on mocknet: gossipsub, heartbeats, announcements, heads, status protocol; no Badger, no kubo)")
	var ro ringOpts
	flag.IntVar(&ro.writers, "ring-writers", 5, "with -ring: writers (curators) in the ring")
	flag.IntVar(&ro.pins, "ring-pins", 100000, "with -ring: pins in the pinset (the status protocol's answers)")
	flag.IntVar(&ro.joinRate, "ring-join-rate", 20, "with -ring: followers joining a second while the ring starts (0: all at once); the warm-up starts once all have joined")
	flag.Float64Var(&ro.asleep, "ring-asleep", 0.1, "with -ring: share of the followers asleep while measuring")
	flag.Float64Var(&ro.reboots, "ring-reboots", 0.01, "with -ring: share of the online followers whose connections all drop every 10 s (a router reboot)")
	flag.DurationVar(&ro.warm, "ring-warm", 40*time.Second, "with -ring: time to settle before measuring")
	flag.DurationVar(&ro.window, "ring-window", time.Minute, "with -ring: how long traffic and CPU are measured")
	flag.DurationVar(&ro.statusLimit, "ring-status-limit", 2*time.Minute, "with -ring: give up a global status after this long")
	flag.Parse()
	// A ring runs in a child process of its own: the child profiles it.
	ringChild := *ringSizes != "" && os.Getenv("PINRING_RING_CHILD") != ""
	if *cpuprofile != "" && (*ringSizes == "" || ringChild) {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *ringSizes != "" {
		var sizes []int
		for _, f := range strings.Split(*ringSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: -ring %q: give follower counts, e.g. 10,100,1000\n", *ringSizes)
				os.Exit(2)
			}
			sizes = append(sizes, n)
		}
		if addr, ok := strings.CutPrefix(*pprofAt, "ring="); ok && ringChild {
			go http.ListenAndServe(addr, nil) // net/http/pprof's handlers
		}
		if err := runRing(sizes, ro); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	for _, one := range strings.Split(*pprofAt, ",") {
		if name, addr, ok := strings.Cut(one, "="); ok {
			pprofFor[name] = addr
		}
	}
	if clientKind != "raw" && clientKind != "go" {
		fmt.Fprintf(os.Stderr, "bench: -client %q: use raw or go\n", clientKind)
		os.Exit(2)
	}
	if *kuboBin != "" {
		if err := runKubo(*peers, *pins, *clients, *bin, *kuboBin, extra); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *churn > 0 {
		if err := runChurn(*peers, *pins, *churn, *clients, *bin, extra); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *repair {
		if err := runRepair(*peers, *pins, *bin, extra); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := runs(*times, *peers, *pins, *clients, *bin, extra); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start starts a peer whose kubo is at kuboAPI, or a stub kubo of its own
// when kuboAPI is "". initArgs go to `cluster-peer init` (by default it
// joins join as a writer).
func start(dir, bin, name string, join, kuboAPI string, initArgs []string, extra ...string) (*peerProc, error) {
	p := &peerProc{name: name, api: fmt.Sprintf("127.0.0.1:%d", freePort())}
	if kuboAPI == "" {
		k, err := fakekubo.New(10_000_000_000, 0)
		if err != nil {
			return nil, err
		}
		p.kubo = k
		kuboAPI = k.Addr
	}
	env := append(os.Environ(), "PINRING_DEBUG_PPROF="+pprofFor[name],
		"PINRING_API_LISTEN="+p.api,
		"PINRING_IPFS_API="+kuboAPI,
		"PINRING_P2P_LISTEN=/ip4/127.0.0.1/tcp/0",
		"GOLOG_LOG_LEVEL=error,peer=info")
	cfg := filepath.Join(dir, name)
	args := append([]string{"--config", cfg, "init"}, initArgs...)
	if join != "" && len(initArgs) == 0 {
		args = append(args, "--join", join)
	}
	init := exec.Command(filepath.Join(bin, "cluster-peer"), args...)
	init.Env = append(env, extra...)
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("init %s: %v: %s", name, err, out)
	}
	p.cmd = exec.Command(filepath.Join(bin, "cluster-peer"), "--config", cfg, "daemon")
	p.cmd.Env = append(env, extra...)
	logf, _ := os.Create(cfg + ".log")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = peerProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.cl, _ = client.New(p.api, 30*time.Second)
	// A new peer's API answers 503 until its snapshot is loaded.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := p.cl.ID(ctx)
		cancel()
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not start: %v (log %s.log)", name, err, cfg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *peerProc) stop() { stopProcess(p.cmd) }

// stopProcess sends SIGTERM and, if the process has not exited 20 s
// later, SIGKILL.
func stopProcess(cmd *exec.Cmd) {
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	}
}

// cpuTimes returns the user+system CPU time of each peer process and,
// last, of this program.
func cpuTimes(ps []*peerProc) []time.Duration {
	var out []time.Duration
	for _, p := range ps {
		out = append(out, procCPU(p.cmd.Process.Pid))
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return append(out, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
}

// renice sets the nice value of every thread of process pid (Linux
// nice is a thread's; threads started later inherit their maker's).
func renice(pid, nice int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		var tid int
		fmt.Sscan(t.Name(), &tid)
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return err
		}
	}
	return nil
}

// procCPU is the user+system CPU time process pid has used so far.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) <= 12 {
		return 0
	}
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return time.Duration(u+s) * (time.Second / 100) // USER_HZ
}

func names(ps []*peerProc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

// peakRSS reads the process's high-water resident set size (MiB).
func (p *peerProc) peakRSS() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// snapshotLine is what the peer logged about the snapshot it loaded.
func (p *peerProc) snapshotLine() string {
	b, _ := os.ReadFile(p.cmd.Args[2] + ".log") // --config <dir>
	for l := range strings.Lines(string(b)) {
		if _, rest, ok := strings.Cut(l, "loaded a snapshot"); ok {
			return "; it loaded a snapshot " + strings.TrimSpace(rest)
		}
	}
	return ""
}

// waitDigest polls every peer's digest, all at once, until all hold want
// pins with the same digest, and returns when that round's requests began:
// a digest reads a snapshot taken when its request begins, so every peer
// was complete then (the round's own reading, up to a second at a million
// pins, must not count).
func waitDigest(ps []*peerProc, want uint64, limit time.Duration) (time.Time, error) {
	start := time.Now()
	var pace roundPace
	for {
		// A digest reads the whole pinset (a tenth of a second at 100,000
		// pins, seconds at a million), so a round is asked for only when
		// the peers' metrics say they may agree — nothing waiting to be
		// packed or merged, the same DAG height — or, in case they never
		// say so, two seconds after the last round. The time stays that
		// of the first round in which every digest matches.
		if !pace.due(func() bool { return mayAgree(ps) }) {
			if time.Since(start) > limit {
				return time.Time{}, fmt.Errorf("digests not equal at %d pins after %s", want, limit)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		round := time.Now()
		ds := make([]api.StateDigest, len(ps))
		errs := make([]error, len(ps))
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds[i], errs[i] = p.cl.Digest(context.Background())
			}()
		}
		wg.Wait()
		pace.ended(round)
		same := true
		for i := range ps {
			if errs[i] != nil || ds[i].Pins != want || ds[i] != ds[0] {
				same = false
			}
		}
		if same {
			return round, nil
		}
		if time.Since(start) > limit {
			return time.Time{}, fmt.Errorf("digests not equal at %d pins after %s", want, limit)
		}
	}
}

// roundPace spaces digest rounds: one when the peers' metrics say they may
// agree, but rounds never take more than half the time (one that failed
// while the metrics agreed is not repeated back to back), and one at least
// every two seconds whatever the metrics say.
type roundPace struct {
	began, end time.Time // of the last round; zero: none yet
	start      time.Time // of the wait
}

func (r *roundPace) due(mayAgree func() bool) bool {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	last := r.began
	if last.IsZero() {
		last = r.start
	}
	if time.Since(last) >= 2*time.Second {
		return true
	}
	return time.Since(r.end) >= r.end.Sub(r.began) && mayAgree()
}

func (r *roundPace) ended(began time.Time) { r.began, r.end = began, time.Now() }

// mayAgree tells whether every peer has nothing left to pack or merge
// and all are at the same DAG height (their metrics, a cheap read).
func mayAgree(ps []*peerProc) bool {
	var height float64
	for i, p := range ps {
		m, err := peerMetrics(p.api, "pinring_state_unpacked", "pinring_crdt_sync_queue", "pinring_crdt_height")
		if err != nil || m["pinring_state_unpacked"] != 0 || m["pinring_crdt_sync_queue"] != 0 {
			return false
		}
		if i > 0 && m["pinring_crdt_height"] != height {
			return false
		}
		height = m["pinring_crdt_height"]
	}
	return true
}

// waitFor polls p's digest until it equals want and returns the time from
// since to the start of the first matching request: a digest reads one
// consistent snapshot taken when the request begins, so that is when the
// state was complete (a million-pin digest itself takes seconds, which
// must not count).
func waitFor(p, ref *peerProc, want api.StateDigest, since time.Time) (time.Duration, error) {
	var pace roundPace
	for {
		if time.Since(since) > 30*time.Minute {
			return 0, fmt.Errorf("%s: digest not equal after 30 minutes", p.name)
		}
		// As in waitDigest: a digest is asked for when the metrics say
		// p may hold everything, or two seconds after the last one.
		if !pace.due(func() bool { return mayAgree([]*peerProc{ref, p}) }) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		asked := time.Now()
		d, err := p.cl.Digest(context.Background())
		pace.ended(asked)
		if err == nil && d == want {
			return asked.Sub(since), nil
		}
	}
}

func benchCid(i int) api.Cid {
	h, _ := mh.Sum(fmt.Appendf(nil, "bench-%d", i), mh.SHA2_256, -1)
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}

// cluster is a set of peer processes sharing a temporary directory; the
// others join the first over loopback.
type cluster struct {
	dir, bin, join string
	extra          []string
	ps             []*peerProc
	// kubos are the kubo APIs of the peers, in order; peers beyond them
	// (and all when it is empty) get stub kubos.
	kubos []string
}

// startCluster starts n peers, each with extra in its environment. Call
// close even when it fails.
func startCluster(n int, bin string, extra []string, kubos ...string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "pinring-bench")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, bin: bin, extra: extra, kubos: kubos}
	first, err := c.add("peer0")
	if err != nil {
		return c, err
	}
	id, err := first.cl.ID(context.Background())
	if err != nil {
		return c, err
	}
	for _, a := range id.Addresses {
		if strings.HasPrefix(a.String(), "/ip4/127.0.0.1/") {
			c.join = a.String()
		}
	}
	// The others write with the first one's key.
	c.extra = append(slices.Clone(c.extra), "PINRING_TRUST_WRITE_KEYS="+id.WriteKey,
		"PINRING_TRUST_WRITE_KEY_FILE="+filepath.Join(dir, "peer0", "write.key"))
	for i := 1; i < n; i++ {
		if _, err := c.add(fmt.Sprintf("peer%d", i)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// add starts one more peer, joining the first, with env added to the
// cluster's extra environment.
func (c *cluster) add(name string, env ...string) (*peerProc, error) {
	return c.addWith(name, nil, env...)
}

// addWith is add with arguments for `cluster-peer init` (e.g. --ticket).
func (c *cluster) addWith(name string, initArgs []string, env ...string) (*peerProc, error) {
	kubo := ""
	if len(c.ps) < len(c.kubos) {
		kubo = c.kubos[len(c.ps)]
	}
	p, err := start(c.dir, c.bin, name, c.join, kubo, initArgs, append(slices.Clone(c.extra), env...)...)
	if err == nil {
		c.ps = append(c.ps, p)
	}
	return p, err
}

func (c *cluster) close() {
	for _, p := range c.ps {
		p.stop()
	}
	if keep {
		fmt.Println("kept the peers' directories and logs in", c.dir)
		return
	}
	os.RemoveAll(c.dir)
}

// ingestion is one run's figures: pins/s accepted at the first peer, and
// until every peer had the same digest.
type ingestion struct{ accepted, equal float64 }

// runs repeats run (a new cluster each time) and, for more than one run,
// prints the spread of the ingestion figures.
func runs(times, n, pins, clients int, bin string, extra []string) error {
	var got []ingestion
	for i := range times {
		if times > 1 {
			fmt.Printf("run %d of %d\n", i+1, times)
		}
		r, err := run(n, pins, clients, bin, extra)
		if err != nil {
			return err
		}
		got = append(got, r)
	}
	if times > 1 {
		spread := func(f func(ingestion) float64) string {
			v := make([]float64, len(got))
			for i, r := range got {
				v[i] = f(r)
			}
			slices.Sort(v)
			med := v[len(v)/2]
			if len(v)%2 == 0 {
				med = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			return fmt.Sprintf("min %.0f, median %.0f, max %.0f", v[0], med, v[len(v)-1])
		}
		fmt.Printf("over %d runs, pins/s: accepted at one peer %s; equal digest at all %d peers %s\n",
			times, spread(func(r ingestion) float64 { return r.accepted }), n, spread(func(r ingestion) float64 { return r.equal }))
	}
	return nil
}

func run(n, pins, clients int, bin string, extra []string) (ingestion, error) {
	var none ingestion
	fmt.Printf("machine: calibration %s\n", calibrate())
	// The ingesting peer's journal makes ~1,000 of these a second.
	if d, err := calibrateDisk(os.TempDir()); err != nil {
		fmt.Printf("disk: not measured: %s\n", err)
	} else {
		fmt.Printf("disk: %s in %s\n", d, os.TempDir())
	}
	c, err := startCluster(n, bin, extra)
	defer c.close()
	if err != nil {
		return none, err
	}
	first := c.ps[0]
	time.Sleep(2 * time.Second) // connections and gossipsub meshes
	fmt.Printf("cluster: %d peers on loopback, stub kubos; %d pins through %s from %d clients (%s); env %v\n", n, pins, first.api, clients, clientKind, extra)

	// The pins' CIDs are made before the clock starts.
	cids := make([]api.Cid, pins)
	strs := make([]string, pins)
	for i := range cids {
		cids[i] = benchCid(i)
		strs[i] = cids[i].String()
	}
	cpuBefore := cpuTimes(c.ps)
	began := time.Now()
	if err := ingest(first, cids, strs, clients, api.PinOptions{}); err != nil {
		return none, err
	}
	accepted := time.Since(began)
	complete, err := waitDigest(c.ps, uint64(pins), 30*time.Minute)
	if err != nil {
		return none, err
	}
	everywhere := complete.Sub(began)
	result := ingestion{accepted: float64(pins) / accepted.Seconds(), equal: float64(pins) / everywhere.Seconds()}
	fmt.Printf("ingestion: accepted at one peer in %s (%.0f pins/s); equal digest at all %d peers after %s (%.0f pins/s)\n",
		accepted.Round(time.Millisecond), float64(pins)/accepted.Seconds(), n, everywhere.Round(time.Millisecond), float64(pins)/everywhere.Seconds())
	// Where the CPU went while ingesting (user+system, µs a pin): every
	// process shares the machine's cores.
	cpuAfter := cpuTimes(c.ps)
	var parts []string
	for i, name := range append(names(c.ps), "bench (clients, stub kubos)") {
		parts = append(parts, fmt.Sprintf("%s %.0f", name, (cpuAfter[i]-cpuBefore[i]).Seconds()*1e6/float64(pins)))
	}
	fmt.Printf("CPU µs a pin while ingesting: %s\n", strings.Join(parts, ", "))
	parts = parts[:0]
	for _, p := range c.ps {
		calls, args := p.kubo.Calls.Load(), p.kubo.Args.Load()
		parts = append(parts, fmt.Sprintf("%s %d calls, %.1f CIDs a call", p.name, calls, float64(args)/float64(max(calls, 1))))
	}
	fmt.Printf("kubo pin/add: %s\n", strings.Join(parts, "; "))
	if m, err := peerMetrics(first.api, "pinring_journal_syncs_total", "pinring_journal_writes_total"); err == nil {
		syncs, writes := m["pinring_journal_syncs_total"], m["pinring_journal_writes_total"]
		fmt.Printf("journal at %s: %.0f writes in %.0f fsyncs (%.1f a fsync)\n", first.name, writes, syncs, writes/max(syncs, 1))
	} else {
		fmt.Printf("journal at %s: %s\n", first.name, err)
	}

	// The reference digest, taken once: nothing changes any more.
	want, err := first.cl.Digest(context.Background())
	if err != nil {
		return none, err
	}
	if err := catchUps(c, first, want, pins); err != nil {
		return none, err
	}
	for _, p := range c.ps {
		fmt.Printf("peak RSS %s: %.0f MiB\n", p.name, p.peakRSS())
	}
	if hold > 0 {
		fmt.Printf("holding the cluster for %s\n", hold)
		time.Sleep(hold)
	}
	return result, nil
}

// catchUps starts a new empty peer for each -catchup path in turn and
// prints how long it takes to reach want, first's digest of pins pins.
func catchUps(c *cluster, first *peerProc, want api.StateDigest, pins int) error {
	for _, path := range strings.FieldsFunc(catchup, func(r rune) bool { return r == ',' }) {
		var env []string
		switch path {
		case "snapshot":
		case "dag":
			env = []string{"PINRING_STATE_SNAPSHOT_WAIT=0"}
		default:
			return fmt.Errorf("-catchup: %q is neither snapshot nor dag", path)
		}
		joinedAt := time.Now()
		late, err := c.add("late-"+path, env...)
		if err != nil {
			return err
		}
		took, err := waitFor(late, first, want, joinedAt)
		if err != nil {
			return err
		}
		fmt.Printf("catch-up (%s): a new empty peer holds all %d pins after %s (%.0f pins/s)%s; peak RSS %.0f MiB\n", path, pins,
			took.Round(time.Millisecond), float64(pins)/took.Seconds(), late.snapshotLine(), late.peakRSS())
		// Stopped before the next path is measured: a peer that has just
		// caught up still works (its tracker's first pass over every pin)
		// and would take CPU from the next one.
		late.stop()
		c.ps = slices.DeleteFunc(c.ps, func(p *peerProc) bool { return p == late })
	}
	return nil
}

// ingest pins every CID (strs: their strings, made before the clock
// started) through p's REST API from clients parallel clients (-client raw
// or go), with opts, and fails if any pin failed.
func ingest(p *peerProc, cids []api.Cid, strs []string, clients int, opts api.PinOptions) error {
	query := ""
	if opts.ReplicationFactorMin != 0 {
		query = fmt.Sprintf("?replication-min=%d&replication-max=%d", opts.ReplicationFactorMin, opts.ReplicationFactorMax)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pin := func(i int) error {
				_, err := p.cl.Pin(context.Background(), cids[i], opts)
				return err
			}
			if clientKind == "raw" {
				rc, err := dialRaw(p.api)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					failed.Add(1)
					return
				}
				defer rc.close()
				rc.query = query
				pin = func(i int) error { return rc.pin(strs[i]) }
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cids) {
					return
				}
				if err := pin(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d pin requests failed; the first: %v", f, len(cids), firstErr.Load())
	}
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// runRepair starts n peers, pins `pins` CIDs with two replicas each, one
// of them always on the victim, SIGKILLs the victim and reports how long
// until every one of those pins is allocated to two live peers whose
// (stub) kubos hold it.
func runRepair(n, pins int, bin string, extra []string) error {
	if n < 3 {
		return fmt.Errorf("-repair needs at least 3 peers")
	}
	c, err := startCluster(n, bin, extra)
	defer c.close()
	if err != nil {
		return err
	}
	ctx := context.Background()
	ps, first := c.ps, c.ps[0]
	ids := map[string]*peerProc{}
	for _, p := range ps {
		id, err := p.cl.ID(ctx)
		if err != nil {
			return err
		}
		ids[id.ID.String()] = p
	}
	victim := ps[n-1]
	vid, _ := victim.cl.ID(ctx)
	fmt.Printf("repair: %d peers (stub kubos), %d pins with rmin=rmax=2 each held by %s; env %v\n", n, pins, victim.name, extra)
	for {
		ms, err := first.cl.Metrics(ctx, "freespace")
		if err == nil && len(ms) == n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var cids []api.Cid
	for i := range pins {
		c := benchCid(1_000_000_000 + i)
		other, _ := ps[i%(n-1)].cl.ID(ctx)
		opts := api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, UserAllocations: []peer.ID{vid.ID, other.ID}}
		if _, err := first.cl.Pin(ctx, c, opts); err != nil {
			return err
		}
		cids = append(cids, c)
	}
	// placed reports whether every pin is on two live peers (not the
	// victim) whose kubos hold it.
	placed := func(excluded string) bool {
		for _, c := range cids {
			p, err := first.cl.Allocation(ctx, c)
			if err != nil || len(p.Allocations) != 2 {
				return false
			}
			for _, a := range p.Allocations {
				pp := ids[a.String()]
				if a.String() == excluded || pp == nil || !pp.kubo.Has(c.String()) {
					return false
				}
			}
		}
		return true
	}
	for !placed("") {
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("all %d pins on their two peers; SIGKILL %s\n", pins, victim.name)
	began := time.Now()
	syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL)
	victim.cmd.Wait()
	c.ps = ps[:n-1]
	for !placed(vid.ID.String()) {
		if time.Since(began) > 30*time.Minute {
			return fmt.Errorf("pins not repaired after 30 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("repair: every one of %d pins pinned twice again %s after SIGKILL\n", pins, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// rawClient pins over one keep-alive HTTP/1.1 connection with no client
// machinery around it, so that the load generator, which shares the cores
// with the peers, takes as little of them as it can. Every answer is read
// whole and must be 200 with the pin's CID in it.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
	host string
	req  []byte
	body []byte
	// query is appended to every POST /pins/{cid} (e.g.
	// "?replication-min=2&replication-max=2").
	query string
}

// peerMetrics reads the named metrics (without labels) from a peer's
// GET /metrics; every one must be there.
func peerMetrics(api string, names ...string) (map[string]float64, error) {
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		if m[name], err = strconv.ParseFloat(value, 64); err != nil {
			return nil, fmt.Errorf("GET /metrics: %s: %w", name, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("GET /metrics: no %s", name)
		}
	}
	return m, nil
}

func dialRaw(addr string) (*rawClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: conn, br: bufio.NewReaderSize(conn, 16<<10), host: addr}, nil
}

func (rc *rawClient) close() { rc.conn.Close() }

func (rc *rawClient) pin(cs string) error {
	rc.req = fmt.Appendf(rc.req[:0], "POST /pins/%s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", cs, rc.query, rc.host)
	if _, err := rc.conn.Write(rc.req); err != nil {
		return err
	}
	code, err := rc.readAnswer()
	switch {
	case err != nil:
		return fmt.Errorf("POST /pins/%s: %w", cs, err)
	case code != http.StatusOK:
		return fmt.Errorf("POST /pins/%s: %d: %s", cs, code, bytes.TrimSpace(rc.body))
	case !bytes.Contains(rc.body, []byte(`"cid":"`+cs+`"`)):
		return fmt.Errorf("POST /pins/%s: the answer is not that pin: %s", cs, rc.body)
	}
	return nil
}

// readAnswer reads one HTTP/1.1 response framed by Content-Length (as
// net/http's server frames a short answer; anything else is an error)
// into rc.body, and returns its status code.
func (rc *rawClient) readAnswer() (int, error) {
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("an answer without Content-Length")
	}
	rc.body = slices.Grow(rc.body[:0], length)[:length]
	_, err = io.ReadFull(rc.br, rc.body)
	return code, err
}
