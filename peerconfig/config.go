// Package peerconfig is a cluster peer's configuration: the service.json file
// with a section per component, its defaults and checks, the files beside it
// in the peer's directory (identity, write key, datastore) and the ticket
// that sets a follower up. The daemons read it; package peer runs it.
package peerconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"

	"os"
	"path/filepath"
	"regexp"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/admission"
	"github.com/pinring/pinring/audit"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/ipfsclient"
	"github.com/pinring/pinring/pintracker"
	"github.com/pinring/pinring/pubsubmon"
	"github.com/pinring/pinring/repair"
	"github.com/pinring/pinring/restapi"
	"github.com/pinring/pinring/restapi/ipfsproxy"
	"github.com/pinring/pinring/restapi/pinsvc"
	"github.com/pinring/pinring/trust"
)

// ConfigFile is the name of the config file in a peer's directory.
const ConfigFile = "service.json"

// TokenKeyFile holds the key that signs API tokens; RevokedTokensFile the
// IDs of revoked tokens.
const (
	TokenKeyFile      = "token.key"
	RevokedTokensFile = "revoked-tokens"
)

// IdentityFile holds the peer's libp2p private key.
const IdentityFile = "identity.key"

// ClusterConfig names the cluster and this peer.
type ClusterConfig struct {
	// Name scopes topics and datastore namespaces. Default "default".
	Name string `json:"name"`
	// Peername is a human name for this peer. Default: the host name.
	Peername string `json:"peername"`
	// ReplicationFactorMin and Max are used when a pin does not set
	// them. -1 means every peer. Defaults -1 and -1.
	ReplicationFactorMin int `json:"replication_factor_min"`
	ReplicationFactorMax int `json:"replication_factor_max"`
	// Datastore is the Badger directory, relative to the config
	// directory unless absolute. Default "datastore".
	Datastore string `json:"datastore"`
	// Bootstrap are /p2p multiaddrs of cluster peers to connect to; the
	// peer keeps trying for as long as it runs. Default none.
	Bootstrap []string `json:"bootstrap"`
	// AnnounceInterval is how often the peer announces itself (its
	// addresses and its kubo's) to the others. Default 10s.
	AnnounceInterval config.Duration `json:"announce_interval"`
	// MemoryLimitMiB is a soft limit on the Go heap (debug.SetMemoryLimit):
	// near it, the garbage collector works harder instead of letting the
	// heap double, which keeps a peer with a million pins under 300 MB.
	// GOMEMLIMIT in the environment takes precedence. 0: no limit.
	// Default 200.
	MemoryLimitMiB int `json:"memory_limit_mib"`
	// LeaveOnShutdown makes a stopping peer tell the others it leaves for
	// good, so that they move its pins at once instead of after
	// repair.grace. Default false (a restart is not a departure).
	LeaveOnShutdown bool `json:"leave_on_shutdown"`
	// Secret, 64 hex digits, makes the cluster a libp2p private network:
	// peers without it cannot connect at all. Tickets carry it. Keep it
	// out of logs and shared files. Default "" (an open network).
	Secret string `json:"secret"`
}

// TrustConfig decides whose writes this peer accepts, and whether it
// writes itself.
type TrustConfig struct {
	// WriteKeys are the cluster's write public keys (z6Mk…): head
	// announcements signed by any other key are dropped. A peer needs at
	// least one to start.
	WriteKeys []string `json:"write_keys"`
	// WriteKeyFile holds this peer's private write key, relative to the
	// config directory unless absolute. Without the file the peer is
	// read-only: it follows the pinset and answers writes with 403.
	// Default "write.key".
	WriteKeyFile string `json:"write_key_file"`
}

// AllocateConfig holds the allocation policies.
type AllocateConfig struct {
	// SpreadBy is a tag name (see monitor.tags): replicas go to peers with
	// different values of it first. "" disables spreading.
	SpreadBy string `json:"spread_by"`
	// PinSizeEstimate (bytes) is what a pin is taken to need on a peer
	// that has not measured its own bytes per pin yet (its pinsize
	// metric): pins on their way to a peer reserve this much each of its
	// free space. Default 0: nothing is reserved until measured, so no
	// pin is refused for a guess (docs/allocation.md).
	PinSizeEstimate uint64 `json:"pin_size_estimate"`
	// FullThreshold is the fraction of kubo's StorageMax above which this
	// peer calls itself full: it takes no new allocations and asks for some
	// of its pins to be moved to peers with more free space. Default 0.9.
	FullThreshold float64 `json:"full_threshold"`
	// GCWhenFull runs kubo's repo gc (at most once a minute) while this
	// peer is full, so that the space of pins moved away is freed. It
	// removes every unpinned block from kubo. Default true.
	GCWhenFull bool `json:"gc_when_full"`
	// Admission is who this peer, as a writer, allocates pins to besides
	// writers: AdmissionAdmitted, the peers a writer admitted
	// (cluster-ctl peers admit); AdmissionOpen, every peer that sends
	// heartbeats. Revoked peers get nothing either way. Set it alike on
	// every writer. Default "admitted".
	Admission string `json:"admission"`
}

// The allocate.admission policies.
const (
	AdmissionAdmitted = admission.Admitted
	AdmissionOpen     = admission.Open
)

// P2PConfig is the peer's libp2p host.
type P2PConfig struct {
	// Listen are the multiaddrs the libp2p host listens on.
	// Default ["/ip4/0.0.0.0/tcp/9096"].
	Listen []string `json:"listen"`
	// ReconnectMax caps the backoff between tries to reach a bootstrap
	// peer. Default 30s.
	ReconnectMax config.Duration `json:"reconnect_max"`
	// MDNS finds peers of the same cluster on the local network (and
	// advertises this one). Default true.
	MDNS bool `json:"mdns"`
}

// Config is the whole configuration of a peer: one section per component.
type Config struct {
	Cluster  ClusterConfig     `json:"cluster"`
	API      restapi.Config    `json:"api"`
	IPFS     ipfsclient.Config `json:"ipfs"`
	P2P      P2PConfig         `json:"p2p"`
	State    crdtstate.Config  `json:"state"`
	Tracker  pintracker.Config `json:"tracker"`
	Monitor  pubsubmon.Config  `json:"monitor"`
	Allocate AllocateConfig    `json:"allocate"`
	Repair   repair.Config     `json:"repair"`
	Audit    audit.Config      `json:"audit"`
	Trust    TrustConfig       `json:"trust"`
	PinSvc   pinsvc.Config     `json:"pinsvc"`
	Proxy    ipfsproxy.Config  `json:"ipfsproxy"`
}

// DefaultConfig spells out every default.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "pinring-peer"
	}
	return Config{
		Cluster: ClusterConfig{Name: "default", Peername: host, ReplicationFactorMin: -1,
			ReplicationFactorMax: -1, Datastore: "datastore", Bootstrap: []string{},
			AnnounceInterval: config.Duration(10 * time.Second), MemoryLimitMiB: 200},
		API:      restapi.DefaultConfig(),
		IPFS:     ipfsclient.DefaultConfig(),
		P2P:      P2PConfig{Listen: []string{"/ip4/0.0.0.0/tcp/9096"}, ReconnectMax: config.Duration(30 * time.Second), MDNS: true},
		State:    crdtstate.DefaultConfig(),
		Tracker:  pintracker.DefaultConfig(),
		Monitor:  pubsubmon.DefaultConfig(),
		Allocate: AllocateConfig{FullThreshold: 0.9, GCWhenFull: true, Admission: AdmissionAdmitted},
		Repair:   repair.DefaultConfig(),
		Audit:    audit.DefaultConfig(),
		Trust:    TrustConfig{WriteKeys: []string{}, WriteKeyFile: "write.key"},
		PinSvc:   pinsvc.DefaultConfig(),
		Proxy:    ipfsproxy.DefaultConfig(),
	}
}

var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks every section.
func (c Config) Validate() error {
	var errs []error
	if !clusterName.MatchString(c.Cluster.Name) {
		errs = append(errs, config.Errf("cluster.name", c.Cluster.Name, "want 1-64 letters, digits, '.', '_' or '-'"))
	}
	rmin, rmax := c.Cluster.ReplicationFactorMin, c.Cluster.ReplicationFactorMax
	if rmin == 0 || rmin < -1 {
		errs = append(errs, config.Errf("cluster.replication_factor_min", rmin, "want -1 (every peer) or ≥ 1"))
	}
	if rmax == 0 || rmax < -1 || rmax != -1 && rmin > rmax {
		errs = append(errs, config.Errf("cluster.replication_factor_max", rmax, "want -1 (every peer) or ≥ replication_factor_min"))
	}
	if c.Cluster.Datastore == "" {
		errs = append(errs, config.Errf("cluster.datastore", "", "must not be empty"))
	}
	if _, err := c.BootstrapAddrs(); err != nil {
		errs = append(errs, err)
	}
	if c.Cluster.MemoryLimitMiB < 0 {
		errs = append(errs, config.Errf("cluster.memory_limit_mib", c.Cluster.MemoryLimitMiB, "must not be negative"))
	}
	if c.Cluster.AnnounceInterval <= 0 {
		errs = append(errs, config.Errf("cluster.announce_interval", c.Cluster.AnnounceInterval.D(), "must be positive"))
	}
	if c.P2P.ReconnectMax <= 0 {
		errs = append(errs, config.Errf("p2p.reconnect_max", c.P2P.ReconnectMax.D(), "must be positive"))
	}
	if len(c.P2P.Listen) == 0 {
		errs = append(errs, config.Errf("p2p.listen", "", "at least one multiaddr is needed"))
	}
	for _, a := range c.P2P.Listen {
		if err := validMultiaddr(a); err != nil {
			errs = append(errs, config.Errf("p2p.listen", a, "%v", err))
		}
	}
	// Other peers refuse heartbeats and announcements with a longer name,
	// or one that would drive a terminal.
	if len(c.Cluster.Peername) > 255 || strings.ContainsFunc(c.Cluster.Peername, unicode.IsControl) {
		errs = append(errs, config.Errf("cluster.peername", c.Cluster.Peername, "at most 255 bytes, without control characters"))
	}
	if c.Allocate.Admission != AdmissionAdmitted && c.Allocate.Admission != AdmissionOpen {
		errs = append(errs, config.Errf("allocate.admission", c.Allocate.Admission, "want \"admitted\" or \"open\""))
	}
	if c.Allocate.FullThreshold <= 0 || c.Allocate.FullThreshold > 1 {
		errs = append(errs, config.Errf("allocate.full_threshold", c.Allocate.FullThreshold, "want a fraction of StorageMax in (0, 1]"))
	}
	if err := c.Repair.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Audit.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, k := range c.Trust.WriteKeys {
		if _, err := trust.ParsePublicKey(k); err != nil {
			errs = append(errs, config.Errf("trust.write_keys", k, "%v", err))
		}
	}
	if c.Trust.WriteKeyFile == "" {
		errs = append(errs, config.Errf("trust.write_key_file", "", "must not be empty"))
	}
	if _, err := c.SecretBytes(); err != nil {
		errs = append(errs, err)
	}
	for _, l := range []struct{ key, addr string }{{"api.listen", c.API.Listen}, {"pinsvc.listen", c.PinSvc.Listen}, {"ipfsproxy.listen", c.Proxy.Listen}} {
		if l.addr != "" && len(c.API.BasicAuthCredentials) == 0 && !loopbackOnly(l.addr) {
			errs = append(errs, config.Errf(l.key, l.addr, "it is reachable beyond this machine, so it needs auth: set api.basic_auth_credentials (a bcrypt hash from 'cluster-peer hash-password'), or listen on 127.0.0.1"))
		}
	}
	errs = append(errs, c.API.Validate(), c.IPFS.Validate(), c.State.Validate(), c.Tracker.Validate(), c.Monitor.Validate(), c.PinSvc.Validate(), c.Proxy.Validate())
	return errors.Join(errs...)
}

// BootstrapAddrs parses cluster.bootstrap: each must be a multiaddr
// ending in /p2p/<peer ID>.
func (c Config) BootstrapAddrs() ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, s := range c.Cluster.Bootstrap {
		m, err := ma.NewMultiaddr(s)
		if err == nil {
			_, err = peer.AddrInfoFromP2pAddr(m)
		}
		if err != nil {
			return nil, config.Errf("cluster.bootstrap", s, "want a multiaddr ending in /p2p/<peer ID>: %v", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// loopbackOnly reports whether a listen address (multiaddr or host:port)
// is reachable only from this machine.
func loopbackOnly(addr string) bool {
	hp, err := config.ParseListen(addr)
	if err != nil {
		return true // reported by the section's own Validate
	}
	return config.IsLoopback(hp)
}

// SecretBytes decodes cluster.secret (nil when unset).
func (c Config) SecretBytes() ([]byte, error) {
	if c.Cluster.Secret == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(c.Cluster.Secret)
	if err != nil || len(b) != trust.SecretSize {
		// The value is a secret: never echo it.
		return nil, config.Errf("cluster.secret", "(hidden)", "want %d hex digits", 2*trust.SecretSize)
	}
	return b, nil
}

// WriteKeyPath is the write key file of a peer in dir.
func (c Config) WriteKeyPath(dir string) string {
	if filepath.IsAbs(c.Trust.WriteKeyFile) {
		return c.Trust.WriteKeyFile
	}
	return filepath.Join(dir, c.Trust.WriteKeyFile)
}

// DatastorePath is the Badger directory for a peer in dir.
func (c Config) DatastorePath(dir string) string {
	if filepath.IsAbs(c.Cluster.Datastore) {
		return c.Cluster.Datastore
	}
	return filepath.Join(dir, c.Cluster.Datastore)
}

// LoadConfig reads dir/service.json over the defaults, applies PINRING_*
// environment overrides and validates the result.
func LoadConfig(dir string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(filepath.Join(dir, ConfigFile), &cfg); err != nil {
		return cfg, err
	}
	if err := config.ApplyEnv(&cfg, os.LookupEnv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// MDNSService is the mDNS service name of the cluster: its name and write
// keys, hashed, so that two clusters on one LAN do not dial each other.
func (cfg Config) MDNSService() string {
	keys := slices.Clone(cfg.Trust.WriteKeys)
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(cfg.Cluster.Name + "\n" + strings.Join(keys, "\n")))
	return "_pr-" + hex.EncodeToString(sum[:5]) + "._udp"
}

// PeerstoreFile remembers the addresses of the cluster peers seen, one /p2p
// multiaddr a line, so that a restarted peer finds the cluster again even
// when its bootstrap peers are gone.
const PeerstoreFile = "peerstore"
