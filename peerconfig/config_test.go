package peerconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/config"
)

func TestDefaultConfigIsValidAndEnvOverrides(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PINRING_API_LISTEN":               "127.0.0.1:7777",
		"PINRING_IPFS_API":                 "/ip4/127.0.0.1/tcp/5555",
		"PINRING_P2P_LISTEN":               "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
		"PINRING_TRACKER_RECOVER_INTERVAL": "7s",
		"PINRING_STATE_BATCH_SIZE":         "9",
		"PINRING_STATE_SYNC_WAIT":          "2ms",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := config.ApplyEnv(&cfg, lookup); err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "127.0.0.1:7777" || cfg.IPFS.API != "/ip4/127.0.0.1/tcp/5555" ||
		len(cfg.P2P.Listen) != 2 || cfg.Tracker.RecoverInterval.D().Seconds() != 7 || cfg.State.BatchSize != 9 ||
		cfg.State.SyncWait.D() != 2*time.Millisecond {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
}

func TestBadValuesNameKeyAndValue(t *testing.T) {
	for env, val := range map[string]string{
		"PINRING_API_LISTEN":           "localhost",
		"PINRING_IPFS_API":             "/dns/nowhere",
		"PINRING_STATE_BATCH_SIZE":     "many",
		"PINRING_TRACKER_CONCURRENCY":  "0",
		"PINRING_CLUSTER_NAME":         "bad name!",
		"PINRING_IPFS_PIN_TIMEOUT":     "soon",
		"PINRING_P2P_LISTEN":           "tcp://x",
		"PINRING_TRACKER_MAX_ATTEMPTS": "-3",
		"PINRING_STATE_SYNC_WAIT":      "-1ms",
		"PINRING_CLUSTER_PEERNAME":     strings.Repeat("n", 256),
		"PINRING_ALLOCATE_ADMISSION":   "everyone",
		"PINRING_AUDIT_SAMPLE":         "0",
		"PINRING_AUDIT_FAIL_ROUNDS":    "-1",
	} {
		cfg := DefaultConfig()
		err := config.ApplyEnv(&cfg, func(k string) (string, bool) { return val, k == env })
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), env) || !strings.Contains(err.Error(), val) {
			t.Errorf("%s=%s: error %v does not name the key and value", env, val, err)
		}
	}
}

func TestConfigFileSpellsOutEveryDefault(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFile)
	cfg := DefaultConfig()
	if err := config.Save(path, &cfg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, kv := range config.Keys(&cfg) {
		leaf := kv[0][strings.LastIndex(kv[0], ".")+1:]
		if !strings.Contains(string(b), `"`+leaf+`"`) {
			t.Errorf("config file lacks %s", kv[0])
		}
	}
	loaded := DefaultConfig()
	loaded.Cluster.Name = "changed"
	if err := config.Load(path, &loaded); err != nil || loaded.Cluster.Name != "default" {
		t.Fatalf("load: %v %+v", err, loaded.Cluster)
	}
}
