package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinring/pinring/internal/freeport"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/ipfsclient"
	"github.com/pinring/pinring/restapi/client"
)

// binDir holds the binaries built for this run; kubo is the ipfs binary;
// repoRoot is the repository (make builds IPFS Cluster's clients in its
// bin/ and tools/).
var binDir, kubo, repoRoot string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	repoRoot = root
	kubo = os.Getenv("PINRING_IPFS_BIN")
	if kubo == "" {
		kubo = filepath.Join(root, "bin", "ipfs")
	}
	if _, err := os.Stat(kubo); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: kubo binary %s not found: run 'make kubo' (make test does it) or set PINRING_IPFS_BIN\n", kubo)
		return 1
	}
	dir, err := os.MkdirTemp("", "pinring-e2e-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building binaries: %v\n", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// freePort finds a loopback port nobody listens on, from below the
// kernel's ephemeral range (internal/freeport says why).
func freePort(t *testing.T) int {
	t.Helper()
	return freeport.Port(t, freeport.E2E)
}

// waitUp waits for cond as waitFor does, but fails at once, with the
// process's exit status, if p exits first.
func waitUp(t *testing.T, p *proc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, func() bool {
		select {
		case <-p.done:
			t.Fatalf("waiting for %s: %s exited: %v", what, filepath.Base(p.cmd.Path), p.err)
		default:
		}
		return cond()
	})
}

// proc is a process this test started; it is stopped by PID.
type proc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, set before done is closed
}

func (p *proc) kill(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("pid %d already exited: %v", p.cmd.Process.Pid, p.err)
	default:
	}
	return syscall.Kill(p.cmd.Process.Pid, sig)
}

func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("pid %d still running after %s", p.cmd.Process.Pid, timeout)
	}
}

// lockedBuffer is a process's output, readable while the process writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: &log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.kill(syscall.SIGKILL) == nil {
			p.wait(10 * time.Second)
		}
		if t.Failed() {
			t.Logf("--- output of %s %v:\n%s", filepath.Base(name), args, lastLines(log.String(), 400))
		}
	})
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runCmd runs a short command and returns its output.
func runCmd(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runCmd(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
	return out
}

// kuboNode is a real kubo daemon on loopback.
type kuboNode struct {
	path string
	api  string // multiaddr
	proc *proc
	env  []string
}

func startKubo(t *testing.T) *kuboNode {
	t.Helper()
	k := &kuboNode{path: filepath.Join(t.TempDir(), "kubo")}
	k.env = []string{"IPFS_PATH=" + k.path}
	mustRun(t, k.env, kubo, "init", "--profile=test", "--empty-repo")
	for _, kv := range [][]string{
		{"Addresses.API", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))},
		{"Addresses.Gateway", ""},
		{"--json", "Addresses.Swarm", `["/ip4/127.0.0.1/tcp/0"]`},
		{"--json", "Bootstrap", "[]"},
		{"Routing.Type", "none"},
		{"--json", "Discovery.MDNS.Enabled", "false"},
	} {
		mustRun(t, k.env, kubo, append([]string{"config"}, kv...)...)
	}
	k.api = strings.TrimSpace(mustRun(t, k.env, kubo, "config", "Addresses.API"))
	k.proc = start(t, k.env, kubo, "daemon")
	waitUp(t, k.proc, 60*time.Second, "kubo API", func() bool {
		_, err := os.Stat(filepath.Join(k.path, "api"))
		return err == nil
	})
	return k
}

func (k *kuboNode) ipfs(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, k.env, kubo, args...)
}

func kuboClient(t *testing.T, k *kuboNode) *ipfsclient.Client {
	cfg := ipfsclient.DefaultConfig()
	cfg.API = k.api
	c, err := ipfsclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peerNode is a real cluster-peer process.
type peerNode struct {
	root *testing.T // owns the processes, so they outlive subtests
	dir  string
	api  string // host:port
	env  []string
	proc *proc
	auth string // user:password when the API asks for one
	bin  string // the daemon's binary; "": cluster-peer
}

func newPeer(t *testing.T, k *kuboNode, initArgs ...string) *peerNode {
	t.Helper()
	return newPeerEnv(t, k, nil, initArgs...)
}

// joinPeer makes a peer that joins first's cluster as a writer: it trusts
// first's write key and signs with the same key file.
func joinPeer(t *testing.T, k *kuboNode, first *peerNode) *peerNode {
	t.Helper()
	return newPeerEnv(t, k, first.writerEnv(t), "--join", loopbackP2P(t, first))
}

// writerEnv makes another peer trust and use this peer's write key.
func (p *peerNode) writerEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "service.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Trust struct {
			WriteKeys []string `json:"write_keys"`
		} `json:"trust"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.Trust.WriteKeys) == 0 {
		t.Fatalf("%s: no trust.write_keys (%v)", p.dir, err)
	}
	return []string{"PINRING_TRUST_WRITE_KEYS=" + strings.Join(cfg.Trust.WriteKeys, ","),
		"PINRING_TRUST_WRITE_KEY_FILE=" + filepath.Join(p.dir, "write.key")}
}

// ticket asks the running peer for its cluster's ticket.
func (p *peerNode) ticket(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, p.env, filepath.Join(binDir, "cluster-peer"), "--config", p.dir, "keys", "ticket"))
}

// fastEnv is the environment of a peer or follower on loopback with its
// API on api, kubo k, and short intervals so that tests run quickly.
func fastEnv(api string, k *kuboNode) []string {
	return []string{
		"PINRING_API_LISTEN=" + api,
		"PINRING_IPFS_API=" + k.api,
		"PINRING_P2P_LISTEN=/ip4/127.0.0.1/tcp/0",
		"PINRING_TRACKER_RECOVER_INTERVAL=1s",
		"PINRING_TRACKER_RETRY_BACKOFF=200ms",
		"PINRING_CLUSTER_ANNOUNCE_INTERVAL=1s",
		"PINRING_STATE_REBROADCAST_INTERVAL=1s",
		"PINRING_P2P_RECONNECT_MAX=2s",
	}
}

func newPeerEnv(t *testing.T, k *kuboNode, env []string, initArgs ...string) *peerNode {
	t.Helper()
	p := &peerNode{root: t, dir: filepath.Join(t.TempDir(), "peer"), api: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	p.env = append(fastEnv(p.api, k), env...)
	mustRun(t, p.env, filepath.Join(binDir, "cluster-peer"), append([]string{"--config", p.dir, "init"}, initArgs...)...)
	return p
}

func (p *peerNode) start(t *testing.T) {
	t.Helper()
	bin := p.bin
	if bin == "" {
		bin = filepath.Join(binDir, "cluster-peer")
	}
	p.proc = start(p.root, p.env, bin, "--config", p.dir, "daemon")
	cl := p.client(t)
	waitUp(t, p.proc, 60*time.Second, "peer API", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cl.ID(ctx)
		return err == nil
	})
}

func (p *peerNode) client(t *testing.T) *client.Client {
	cl, err := client.NewWithOptions(p.api, 30*time.Second, client.Options{BasicAuth: p.auth})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func (p *peerNode) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCmd(t, []string{"PINRING_CTL_BASIC_AUTH=" + p.auth}, filepath.Join(binDir, "cluster-ctl"), append([]string{"--host", p.api}, args...)...)
}

func (p *peerNode) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.ctl(t, args...)
	if err != nil {
		t.Fatalf("cluster-ctl %v: %v\n%s", args, err, out)
	}
	return out
}

// decodeAll reads a stream of JSON values (cluster-ctl --json lists print
// one object a line).
func decodeAll[T any](s string) ([]T, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var out []T
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}
