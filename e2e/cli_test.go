package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPeerCLI checks cluster-peer's init and start-up errors: each failure
// exits non-zero with one line that names the problem.
func TestPeerCLI(t *testing.T) {
	bin := filepath.Join(binDir, "cluster-peer")
	dir := filepath.Join(t.TempDir(), "cfg")
	oneLine := func(out string, want ...string) {
		t.Helper()
		out = strings.TrimSpace(out)
		if strings.Count(out, "\n") != 0 {
			t.Errorf("want one line, got:\n%s", out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%q does not mention %q", out, w)
			}
		}
	}

	out, err := runCmd(t, nil, bin, "--config", dir, "daemon")
	if err == nil {
		t.Fatal("daemon without config started")
	}
	oneLine(out, "init")

	mustRun(t, nil, bin, "--config", dir, "init")
	key, err := os.ReadFile(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "identity.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("identity.key mode %v", fi.Mode().Perm())
	}
	out, err = runCmd(t, nil, bin, "--config", dir, "init")
	if err == nil {
		t.Fatal("init overwrote without --force")
	}
	oneLine(out, "--force")
	mustRun(t, []string{"PINRING_CLUSTER_NAME=other"}, bin, "--config", dir, "init", "--force")
	cfg, _ := os.ReadFile(filepath.Join(dir, "service.json"))
	if !strings.Contains(string(cfg), `"other"`) || !strings.Contains(string(cfg), `"recover_interval"`) {
		t.Fatalf("init --force did not write the env value and every default:\n%s", cfg)
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, "identity.key")); string(key2) != string(key) {
		t.Fatal("init --force replaced the peer key")
	}

	// A --join that is not a peer's multiaddr is named, and nothing is written.
	other := filepath.Join(t.TempDir(), "cfg")
	for _, bad := range []string{"nonsense", "/ip4/127.0.0.1/tcp/9096"} {
		out, err := runCmd(t, nil, bin, "--config", other, "init", "--join", bad)
		if err == nil {
			t.Fatalf("init --join %s: accepted", bad)
		}
		oneLine(out, "--join", bad, "/p2p/")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("a refused init left %s behind: %v", other, err)
	}

	for env, want := range map[string][]string{
		"PINRING_STATE_BATCH_SIZE=many":   {"state.batch_size", "PINRING_STATE_BATCH_SIZE", "many"},
		"PINRING_API_LISTEN=nowhere":      {"api.listen", "nowhere"},
		"PINRING_IPFS_API=/ip4/127.0.0.1": {"ipfs.api", "/ip4/127.0.0.1"},
		"PINRING_P2P_LISTEN=/bogus/thing": {"p2p.listen", "/bogus/thing"},
	} {
		out, err := runCmd(t, []string{env}, bin, "--config", dir, "daemon")
		if err == nil {
			t.Fatalf("%s: daemon started", env)
		}
		oneLine(out, want...)
	}
}

// Shell completion for every shell cobra knows.
func TestCtlCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef cluster-ctl", "fish": "fish completion"} {
		out := mustRun(t, nil, filepath.Join(binDir, "cluster-ctl"), "completion", shell)
		if !strings.Contains(out, want) || !strings.Contains(out, "cluster-ctl") {
			t.Errorf("completion %s: %.200s", shell, out)
		}
	}
}
