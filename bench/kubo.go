package main

// The -kubo mode: the curator's bulk pin on real kubo daemons (issue 22),
// with the ceiling of kubo alone measured in the same run.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/ipfsclient"
)

// kuboDaemon is a real kubo daemon on loopback.
type kuboDaemon struct {
	api  string // multiaddr
	host string // host:port of the same
	cmd  *exec.Cmd
	cl   *ipfsclient.Client
}

// startKubo initialises a kubo repository in dir (the test profile,
// default StorageMax, nothing leaving loopback) and starts its daemon.
func startKubo(bin, dir string) (*kuboDaemon, error) {
	env := append(os.Environ(), "IPFS_PATH="+dir)
	run := func(args ...string) error {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ipfs %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	port := freePort()
	k := &kuboDaemon{api: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port), host: fmt.Sprintf("127.0.0.1:%d", port)}
	if err := run("init", "--profile=test", "--empty-repo"); err != nil {
		return nil, err
	}
	for _, kv := range [][]string{
		{"Addresses.API", k.api},
		{"Addresses.Gateway", ""},
		{"--json", "Addresses.Swarm", `["/ip4/127.0.0.1/tcp/0"]`},
		{"--json", "Bootstrap", "[]"},
		{"Routing.Type", "none"},
		{"--json", "Discovery.MDNS.Enabled", "false"},
	} {
		if err := run(append([]string{"config"}, kv...)...); err != nil {
			return nil, err
		}
	}
	k.cmd = exec.Command(bin, "daemon")
	k.cmd.Env = env
	logf, _ := os.Create(dir + ".log")
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = peerProcAttr()
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	cfg := ipfsclient.DefaultConfig()
	cfg.API = k.api
	cl, err := ipfsclient.New(cfg)
	if err != nil {
		return nil, err
	}
	k.cl = cl
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.ID(ctx)
		cancel()
		if err == nil {
			return k, nil
		}
		if time.Now().After(deadline) {
			k.stop()
			return nil, fmt.Errorf("kubo in %s did not start: %v (log %s.log)", dir, err, dir)
		}
	}
}

func (k *kuboDaemon) stop() { stopProcess(k.cmd) }

// unpinMany removes kubo's pins of cids in one call.
func (k *kuboDaemon) unpinMany(cids []api.Cid) error {
	q := url.Values{}
	for _, c := range cids {
		q.Add("arg", c.String())
	}
	resp, err := http.Post("http://"+k.host+"/api/v0/pin/rm?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kubo pin/rm: %s: %s", resp.Status, body)
	}
	return nil
}

// held lists the CIDs kubo pins recursively.
func (k *kuboDaemon) held(ctx context.Context) (map[string]bool, error) {
	out := make(chan api.IPFSPinInfo, 1024)
	errc := make(chan error, 1)
	go func() { errc <- k.cl.PinLs(ctx, "recursive", out) }()
	got := map[string]bool{}
	for p := range out {
		got[p.Cid.String()] = true
	}
	return got, <-errc
}

// randomBlocks makes n random 100-byte raw blocks and their CIDs.
func randomBlocks(n int) ([][]byte, []api.Cid) {
	blocks := make([][]byte, n)
	cids := make([]api.Cid, n)
	for i := range blocks {
		blocks[i] = make([]byte, 100)
		rand.Read(blocks[i])
		h, _ := mh.Sum(blocks[i], mh.SHA2_256, -1)
		cids[i] = api.NewCid(cid.NewCidV1(cid.Raw, h))
	}
	return blocks, cids
}

// share is what kubo i of n pins when every CID goes to two kubos in turn.
func share(cids []api.Cid, i, n int) []api.Cid {
	var out []api.Cid
	for j, c := range cids {
		if j%n == i || (j+1)%n == i {
			out = append(out, c)
		}
	}
	return out
}

// kuboAlone is the ceiling: every kubo pins its share (two replicas of
// each CID over the kubos) at once, 500 CIDs a call, with no cluster.
func kuboAlone(ks []*kuboDaemon, cids []api.Cid) (time.Duration, error) {
	began := time.Now()
	errs := make([]error, len(ks))
	var wg sync.WaitGroup
	for i, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := share(cids, i, len(ks))
			for j := 0; j < len(mine) && errs[i] == nil; j += 500 {
				errs[i] = k.cl.PinMany(context.Background(), mine[j:min(j+500, len(mine))], api.PinModeRecursive, nil)
			}
		}()
	}
	wg.Wait()
	return time.Since(began), errors.Join(errs...)
}

// runKubo is the -kubo mode: n real kubos holding 2 × pins random blocks;
// kubo alone pins one half twice over (the ceiling); then n peers take the
// other half at rmin=rmax=2 through one peer's REST API; then a new
// follower catches up; then the last peer is SIGKILLed and its replicas
// move to the survivors. Every figure comes from this one run.
func runKubo(n, pins, clients int, bin, kuboBin string, extra []string) error {
	if n < 3 {
		return fmt.Errorf("-kubo needs at least 3 peers")
	}
	ctx := context.Background()
	fmt.Printf("machine: calibration %s\n", calibrate())
	dir, err := os.MkdirTemp("", "pinring-bench-kubo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var ks []*kuboDaemon
	defer func() {
		for _, k := range ks {
			k.stop()
		}
	}()
	var apis []string
	for i := range n {
		k, err := startKubo(kuboBin, filepath.Join(dir, fmt.Sprintf("kubo%d", i)))
		if err != nil {
			return err
		}
		ks, apis = append(ks, k), append(apis, k.api)
	}
	blocks, all := randomBlocks(2 * pins)
	aloneCids, cids := all[:pins], all[pins:]
	began := time.Now()
	for _, k := range ks {
		for i := 0; i < len(blocks); i += 1000 {
			if err := k.cl.BlockPutMany(ctx, blocks[i:min(i+1000, len(blocks))], "raw", "sha2-256"); err != nil {
				return err
			}
		}
	}
	fmt.Printf("kubos: %d real kubo daemons (%s), %d random 100-byte blocks in each (%s)\n", n, kuboBin, len(blocks), time.Since(began).Round(time.Millisecond))

	kuboCPU := func() (d time.Duration) {
		for _, k := range ks {
			d += procCPU(k.cmd.Process.Pid)
		}
		return d
	}
	cpu := kuboCPU()
	alone, err := kuboAlone(ks, aloneCids)
	if err != nil {
		return fmt.Errorf("kubo alone: %w", err)
	}
	ceiling := float64(pins) / alone.Seconds()
	fmt.Printf("kubo alone: %d CIDs pinned twice over %d kubos at once, 500 CIDs a call, in %s: %.0f CIDs/s fully replicated (kubos' CPU %s)\n",
		pins, n, alone.Round(time.Millisecond), ceiling, (kuboCPU() - cpu).Round(10*time.Millisecond))
	// Those pins go, so that the peers' trackers find only their own.
	for i, k := range ks {
		mine := share(aloneCids, i, n)
		for j := 0; j < len(mine); j += 500 {
			if err := k.unpinMany(mine[j:min(j+500, len(mine))]); err != nil {
				return fmt.Errorf("unpinning the ceiling's pins: %w", err)
			}
		}
	}

	c, err := startCluster(n, bin, extra, apis...)
	defer c.close()
	if err != nil {
		return err
	}
	if kuboNice != 0 {
		for _, p := range c.ps {
			if err := renice(p.cmd.Process.Pid, kuboNice); err != nil {
				return err
			}
		}
		if err := renice(os.Getpid(), kuboNice); err != nil {
			return err
		}
	}
	first := c.ps[0]
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		ms, err := first.cl.Metrics(ctx, "freespace")
		if err == nil && len(ms) == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has not seen %d freespace metrics after a minute", first.name, n)
		}
	}
	fmt.Printf("cluster: %d peers on the kubos; %d pins at rmin=rmax=2 through %s from %d clients (%s); env %v\n", n, pins, first.api, clients, clientKind, extra)
	strs := make([]string, len(cids))
	for i, c := range cids {
		strs[i] = c.String()
	}
	watch := watchCompletions(c.ps, kuboTimeline)
	cpu, cpuPeers := kuboCPU(), cpuTimes(c.ps)
	began = time.Now()
	if err := ingest(first, cids, strs, clients, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); err != nil {
		return err
	}
	accepted := time.Since(began)
	fmt.Printf("REST: all %d pins accepted in %s (%.0f pins/s, each durable when answered)\n", pins, accepted.Round(time.Millisecond), float64(pins)/accepted.Seconds())

	// The pinset at every peer, and every replica in kubo, timed together.
	type digestResult struct {
		at  time.Time
		err error
	}
	digested := make(chan digestResult, 1)
	go func() {
		at, err := waitDigest(slices.Clone(c.ps), uint64(pins), 30*time.Minute)
		digested <- digestResult{at, err}
	}()
	index := map[string]int{}
	for i, p := range c.ps {
		id, err := p.cl.ID(ctx)
		if err != nil {
			return err
		}
		index[id.ID.String()] = i
	}
	seen, err := waitReplicas(ctx, first, ks, index, strs, "", began, watch)
	if err != nil {
		return err
	}
	// The kubos' pin lists, asked every 2 s so as not to load kubo, prove
	// every replica is there and bound when; the peers' count of what
	// kubo acknowledged says when to within 0.1 s.
	last, timeline := watch.end()
	cpuKubos, cpuAfter := kuboCPU()-cpu, cpuTimes(c.ps)
	var peersCPU []string
	for i := range c.ps {
		peersCPU = append(peersCPU, (cpuAfter[i] - cpuPeers[i]).Round(10*time.Millisecond).String())
	}
	fmt.Printf("CPU from the first request to the last replica seen: kubos %s, peers %s, this program %s (%s of wall time on %d cores)\n",
		cpuKubos.Round(10*time.Millisecond), strings.Join(peersCPU, " / "), (cpuAfter[len(c.ps)] - cpuPeers[len(c.ps)]).Round(10*time.Millisecond), seen.Round(time.Millisecond), runtime.NumCPU())
	pinned := seen
	if d := last.Sub(began); d > 0 && d < seen {
		pinned = d
	}
	for _, l := range timeline {
		fmt.Println("  pins kubo acknowledged, by peer:", l)
	}
	d := <-digested
	if d.err != nil {
		return d.err
	}
	complete := d.at.Sub(began)
	fmt.Printf("pinset complete at all %d peers after %s (%.0f pins/s)\n", n, complete.Round(time.Millisecond), float64(pins)/complete.Seconds())
	fmt.Printf("every replica pinned in kubo after %s: %.0f CIDs/s fully replicated, %.0f %% of kubo alone (kubos' pin lists complete at %s)\n",
		pinned.Round(time.Millisecond), float64(pins)/pinned.Seconds(), 100*float64(pins)/pinned.Seconds()/ceiling, seen.Round(time.Millisecond))
	for _, p := range c.ps {
		fmt.Printf("peak RSS %s: %.0f MiB\n", p.name, p.peakRSS())
	}

	if kuboIngestOnly {
		return nil
	}
	// A new follower, from a ticket, with a stub kubo.
	want, err := first.cl.Digest(ctx)
	if err != nil {
		return err
	}
	ticket, err := exec.Command(filepath.Join(bin, "cluster-peer"), "--config", filepath.Join(c.dir, first.name), "keys", "ticket").Output()
	if err != nil {
		return fmt.Errorf("keys ticket: %w", err)
	}
	joinedAt := time.Now()
	late, err := c.addWith("follower", []string{"--ticket", strings.TrimSpace(string(ticket))})
	if err != nil {
		return err
	}
	took, err := waitFor(late, first, want, joinedAt)
	if err != nil {
		return err
	}
	fmt.Printf("a new follower holds all %d pins after %s%s\n", pins, took.Round(time.Millisecond), late.snapshotLine())
	late.stop()
	c.ps = slices.DeleteFunc(c.ps, func(p *peerProc) bool { return p == late })

	// SIGKILL the last peer: its replicas move to the survivors.
	victim := c.ps[n-1]
	vid, err := victim.cl.ID(ctx)
	if err != nil {
		return err
	}
	held := 0
	if got, err := ks[n-1].held(ctx); err == nil {
		for _, s := range strs {
			if got[s] {
				held++
			}
		}
	}
	fmt.Printf("SIGKILL %s (holding %d replicas); defaults: metrics live 3 × monitor.interval, then repair.grace, then a repair pass\n", victim.name, held)
	began = time.Now()
	syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL)
	victim.cmd.Wait()
	c.ps = c.ps[:n-1]
	repaired, err := waitReplicas(ctx, first, ks[:n-1], index, strs, vid.ID.String(), began, nil)
	if err != nil {
		return err
	}
	fmt.Printf("repair: every pin on two live peers' kubos %s after SIGKILL\n", repaired.Round(100*time.Millisecond))
	return nil
}

// waitReplicas waits until every CID in strs is allocated to two peers
// (none of them excluded) and pinned in exactly those peers' kubos, and
// returns how long after since that was first seen. It prints when the
// allocations alone were first right (with excluded set: the repair).
// Once the allocations are right it polls only the kubos not yet
// complete, so that its own load on kubo stays small; with a watch, it
// first waits until every peer counts as many acknowledged pins as its
// kubo must hold, and only then asks the kubos.
func waitReplicas(ctx context.Context, first *peerProc, ks []*kuboDaemon, index map[string]int, strs []string, excluded string, since time.Time, watch *completions) (time.Duration, error) {
	in := map[string]bool{}
	for _, s := range strs {
		in[s] = true
	}
	deadline := since.Add(30 * time.Minute)
	var want map[string][2]int
	for want == nil {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("pins not all allocated to two live peers after 30 minutes")
		}
		asked := time.Now()
		got := map[string][2]int{}
		bad := false
		err := first.cl.Allocations(ctx, "", func(p api.Pin) error {
			s := p.Cid.String()
			if !in[s] {
				return nil
			}
			if len(p.Allocations) != 2 {
				bad = true
				return nil
			}
			var on [2]int
			for j, a := range p.Allocations {
				i, ok := index[a.String()]
				if !ok || a.String() == excluded {
					bad = true
				}
				on[j] = i
			}
			got[s] = on
			return nil
		})
		if err != nil || bad || len(got) != len(strs) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		want = got
		if excluded != "" {
			fmt.Printf("repair: every pin re-allocated %s after SIGKILL\n", asked.Sub(since).Round(100*time.Millisecond))
		}
	}
	expected := make([]int, len(ks))
	for _, on := range want {
		for _, i := range on {
			if i < len(ks) {
				expected[i]++
			}
		}
	}
	for watch != nil && !watch.reached(expected) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Listing kubo's pins costs kubo CPU that its pinning needs: every 2 s
	// while a kubo holds under 90 % of what it must, every 250 ms after.
	done := make([]bool, len(ks))
	for {
		asked := time.Now()
		all, near := true, true
		for i, k := range ks {
			if done[i] {
				continue
			}
			got, err := k.held(ctx)
			done[i] = err == nil
			n := 0
			for s, on := range want {
				if got[s] != (on[0] == i || on[1] == i) {
					done[i] = false
				} else if got[s] {
					n++
				}
			}
			all = all && done[i]
			near = near && n*10 >= expected[i]*9
		}
		if all {
			return asked.Sub(since), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("replicas not all pinned in their kubos after 30 minutes")
		}
		if near {
			time.Sleep(250 * time.Millisecond)
		} else {
			time.Sleep(2 * time.Second)
		}
	}
}

// completions follows every peer's count of pins its tracker saw kubo
// acknowledge (pinring_pin_duration_seconds_count in GET /metrics), every
// 100 ms: a scrape costs the peer little and its kubo nothing. For each
// peer it keeps the count and the first scrape that saw it, so the last
// completion on a peer happened after the scrape before that one and no
// later than that scrape. Only its goroutine touches the fields until
// end has waited for it.
type completions struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex // count, for reached
	count []float64
	since []time.Time
	// timeline, when asked for, is every peer's count each half second.
	timeline []string
}

func watchCompletions(ps []*peerProc, timeline bool) *completions {
	w := &completions{stop: make(chan struct{}), done: make(chan struct{}),
		count: make([]float64, len(ps)), since: make([]time.Time, len(ps))}
	go func() {
		defer close(w.done)
		began := time.Now()
		lastLine := began
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			at := time.Now()
			for i, p := range ps {
				m, err := peerMetrics(p.api, "pinring_pin_duration_seconds_count")
				if err != nil {
					continue
				}
				if v := m["pinring_pin_duration_seconds_count"]; v != w.count[i] {
					w.mu.Lock()
					w.count[i], w.since[i] = v, at
					w.mu.Unlock()
				}
			}
			if timeline && at.Sub(lastLine) >= 500*time.Millisecond {
				lastLine = at
				w.timeline = append(w.timeline, fmt.Sprintf("%5.1fs %v", at.Sub(began).Seconds(), w.count))
			}
		}
	}()
	return w
}

// reached tells whether every peer i has counted at least want[i] pins.
func (w *completions) reached(want []int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, n := range want {
		if i < len(w.count) && w.count[i] < float64(n) {
			return false
		}
	}
	return true
}

// end stops the watcher and returns when the last completion was seen:
// the latest first sighting of a peer's final count.
func (w *completions) end() (last time.Time, timeline []string) {
	close(w.stop)
	<-w.done
	for _, t := range w.since {
		if t.After(last) {
			last = t
		}
	}
	return last, w.timeline
}
