// Command cluster-peer runs a trusted Pinring peer: it keeps the pinset and
// makes its kubo pin what the pinset allocates to it.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	rdebug "runtime/debug"
	"strings"
	"syscall"
	"time"

	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/cli"
	"github.com/pinring/pinring/peer"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/auth"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/trust"
)

func defaultDir() string { return cli.Dir("PINRING_PATH", ".pinring") }

func main() {
	var dir string
	var debug bool
	root := &cobra.Command{
		Use:   "cluster-peer",
		Short: "Run a Pinring cluster peer",
		Long: `cluster-peer runs a trusted Pinring peer next to a kubo daemon.

Its configuration lives in --config DIR (default $PINRING_PATH or ~/.pinring):
service.json with every key spelled out, and the peer key identity.key.
Any key can be overridden with PINRING_<SECTION>_<KEY>, e.g. PINRING_API_LISTEN.`,
		PersistentPreRun: func(*cobra.Command, []string) { cli.SetupLogging(debug) },
	}
	root.PersistentFlags().StringVarP(&dir, "config", "c", defaultDir(), "configuration directory")
	root.PersistentFlags().BoolVarP(&debug, "debug", "d", false, "debug logging")

	var force, noWriteKey bool
	var join []string
	var ticketText string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a configuration with every default and create the peer key",
		Long: `init writes DIR/service.json and the peer key.

Without --ticket it founds a new cluster: it also creates a write key
(DIR/write.key, mode 0600) and makes its public half the cluster's write key.
With --ticket it joins the ticket's cluster as a read-only peer; give it a
write key afterwards with 'cluster-peer keys import-write-key'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			path := filepath.Join(dir, peerconfig.ConfigFile)
			if _, err := os.Stat(path); err == nil && !force {
				return fmt.Errorf("%s exists; use --force to overwrite it (the peer key is kept)", path)
			}
			cfg := peerconfig.DefaultConfig()
			// Environment overrides given at init are written into the file.
			if err := config.ApplyEnv(&cfg, os.LookupEnv); err != nil {
				return err
			}
			// A --join that is not a peer's address is named before anything
			// else is asked of it.
			for _, j := range join {
				m, err := ma.NewMultiaddr(j)
				if err == nil {
					_, err = libp2ppeer.AddrInfoFromP2pAddr(m)
				}
				if err != nil {
					return fmt.Errorf("--join %q: want the multiaddr of a peer, ending in /p2p/<peer ID> (as 'cluster-ctl id' prints it): %v", j, err)
				}
			}
			if ticketText != "" {
				t, err := trust.ParseTicket(ticketText)
				if err != nil {
					return err
				}
				cfg.ApplyTicket(t)
			} else if len(join) > 0 && len(cfg.Trust.WriteKeys) == 0 {
				return errors.New("joining a cluster needs its write public keys: use --ticket <ticket> (print one with 'cluster-peer keys ticket' on a peer of the cluster)")
			}
			cfg.Cluster.Bootstrap = append(cfg.Cluster.Bootstrap, join...)
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			founding := ticketText == "" && len(cfg.Trust.WriteKeys) == 0 && !noWriteKey
			if founding {
				k, created, err := loadOrCreateWriteKey(cfg.WriteKeyPath(dir))
				if err != nil {
					return err
				}
				cfg.Trust.WriteKeys = []string{k.Public().String()}
				if created {
					fmt.Fprintf(out, "created write key %s in %s (mode 0600): it lets this peer change the pinset; keep it secret\n", k.Public(), cfg.WriteKeyPath(dir))
				}
			}
			if err := config.Save(path, &cfg); err != nil {
				return err
			}
			if _, err := peerconfig.LoadIdentity(dir); err != nil {
				if _, err := peerconfig.NewIdentity(dir); err != nil {
					return fmt.Errorf("creating the peer key: %w", err)
				}
			}
			fmt.Fprintf(out, "wrote %s\n", path)
			if _, err := trust.LoadWriteKey(cfg.WriteKeyPath(dir)); trust.IsNotExist(err) {
				fmt.Fprintf(out, "this peer holds no write key: it follows cluster %q read-only\n", cfg.Cluster.Name)
			}
			return nil
		},
	}
	initCmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite an existing configuration")
	initCmd.Flags().StringArrayVar(&join, "join", nil, "/p2p multiaddr of a peer of the cluster to join (written to cluster.bootstrap; repeatable)")
	initCmd.Flags().StringVar(&ticketText, "ticket", "", "join the cluster of this ticket (from 'cluster-peer keys ticket')")
	initCmd.Flags().BoolVar(&noWriteKey, "no-write-key", false, "found a cluster without creating a write key here (set trust.write_keys yourself)")

	var bootstrap []string

	daemon := &cobra.Command{
		Use:   "daemon",
		Short: "Run the peer until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(dir)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no configuration in %s: run 'cluster-peer --config %s init' first", dir, dir)
			}
			if err != nil {
				return err
			}
			cfg.Cluster.Bootstrap = append(cfg.Cluster.Bootstrap, bootstrap...)
			if err := cfg.Validate(); err != nil {
				return err
			}
			if cfg.Cluster.MemoryLimitMiB > 0 && os.Getenv("GOMEMLIMIT") == "" {
				rdebug.SetMemoryLimit(int64(cfg.Cluster.MemoryLimitMiB) << 20)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p, err := peer.New(ctx, cfg, dir)
			if err != nil {
				return err
			}
			if addr := os.Getenv("PINRING_DEBUG_PPROF"); addr != "" {
				// Go's profiler, for measuring a running peer. Only on
				// loopback: profiles reveal internals.
				if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
					return fmt.Errorf("PINRING_DEBUG_PPROF=%q: want a loopback host:port", addr)
				}
				go func() { _ = http.ListenAndServe(addr, nil) }()
			}
			role := "writer (holds a write key)"
			if !p.CanWrite() {
				role = "follower (read-only: no write key)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Pinring peer %s ready, cluster %q, %s\nREST API: http://%s\nDashboard: http://%s/ui/\n", p.PeerID(), cfg.Cluster.Name, role, p.APIAddr(), p.APIAddr())
			if a := p.ProxyAddr(); a != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "IPFS proxy: /ip4/%s/tcp/%s (use: ipfs --api <this> pin add …)\n", hostOf(a), portOf(a))
			}
			if a := p.PinSvcAddr(); a != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Pinning Service API: http://%s\n", a)
			}
			for _, a := range p.P2PAddrs() {
				fmt.Fprintf(cmd.OutOrStdout(), "P2P: %s\n", a)
			}
			return p.Run(ctx, cmd.OutOrStdout())
		},
	}
	daemon.Flags().StringArrayVar(&bootstrap, "bootstrap", nil, "/p2p multiaddr of a cluster peer to connect to (repeatable; added to cluster.bootstrap)")
	leave := &cobra.Command{
		Use:   "leave",
		Short: "Make the running peer leave the cluster for good, then stop",
		Long: `leave tells the other peers that this peer is leaving for good: they move
its pins to other peers at once, without waiting for repair.grace. The peer then
stops. Starting it again makes it a member again (with no pins allocated).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(dir)
			if err != nil {
				return err
			}
			sk, err := peerconfig.LoadIdentity(dir)
			if err != nil {
				return err
			}
			id, err := libp2ppeer.IDFromPrivateKey(sk)
			if err != nil {
				return err
			}
			cl, err := client.New(cfg.API.Listen, 30*time.Second)
			if err != nil {
				return err
			}
			if err := cl.PeerRm(cmd.Context(), id); err != nil {
				return fmt.Errorf("is the peer running? %w", err)
			}
			// Wait for the daemon to stop answering.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
				_, err := cl.ID(ctx)
				cancel()
				if err != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peer %s left the cluster and stopped\n", id)
			return nil
		},
	}
	hash := &cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on standard input and print its bcrypt hash for api.basic_auth_credentials",
		Long: `hash-password reads one line (the password) from standard input and prints the
bcrypt hash to put in service.json:

  "api": {"basic_auth_credentials": {"admin": "<the hash>"}}

or PINRING_API_BASIC_AUTH_CREDENTIALS=admin=<the hash>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			h, err := auth.HashPassword(strings.TrimRight(line, "\r\n"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
	root.AddCommand(initCmd, daemon, leave, hash, keysCmd(&dir), stateCmd(&dir))
	cli.Main(root)
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }
func portOf(hp string) string { _, port, _ := net.SplitHostPort(hp); return port }
