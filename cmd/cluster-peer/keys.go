package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/spf13/cobra"

	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/trust"
)

// loadOrCreateWriteKey returns the key in path, creating it when there is
// none.
func loadOrCreateWriteKey(path string) (k *trust.WriteKey, created bool, err error) {
	k, err = trust.LoadWriteKey(path)
	if err == nil || !trust.IsNotExist(err) {
		return k, false, err
	}
	if k, err = trust.NewWriteKey(); err != nil {
		return nil, false, err
	}
	return k, true, k.Save(path, false)
}

// editConfig changes service.json in dir (defaults under the file, no
// environment overrides, so that nothing from the environment is baked in).
func editConfig(dir string, change func(*peerconfig.Config) error) (peerconfig.Config, error) {
	path := filepath.Join(dir, peerconfig.ConfigFile)
	cfg := peerconfig.DefaultConfig()
	if err := config.Load(path, &cfg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return cfg, fmt.Errorf("no configuration in %s: run 'cluster-peer --config %s init' first", dir, dir)
		}
		return cfg, err
	}
	if err := change(&cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, config.Save(path, &cfg)
}

func trustKey(cfg *peerconfig.Config, k trust.PublicKey) bool {
	if slices.Contains(cfg.Trust.WriteKeys, k.String()) {
		return false
	}
	cfg.Trust.WriteKeys = append(cfg.Trust.WriteKeys, k.String())
	return true
}

func keysCmd(dir *string) *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Write keys, tickets (read keys) and the network secret",
		Long: `A write key lets a peer change the pinset; every head announcement is signed
with one, and peers drop announcements not signed by a key in trust.write_keys.
A ticket (read key) lets anyone follow the cluster and donate disk, never write.`,
	}

	var force bool
	newKey := &cobra.Command{
		Use:   "new-write-key",
		Short: "Create this peer's write key and add its public half to trust.write_keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			path := cfg.WriteKeyPath(*dir)
			if _, err := os.Stat(path); err == nil && !force {
				return fmt.Errorf("%s exists; --force replaces it (its public key stays trusted until 'keys remove-write-key')", path)
			}
			k, err := trust.NewWriteKey()
			if err != nil {
				return err
			}
			if _, err := editConfig(*dir, func(c *peerconfig.Config) error { trustKey(c, k.Public()); return nil }); err != nil {
				return err
			}
			if err := k.Save(path, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created write key %s in %s (mode 0600)\nadd it on the other peers: cluster-peer keys add-write-key %s\n", k.Public(), path, k.Public())
			return nil
		},
	}
	newKey.Flags().BoolVarP(&force, "force", "f", false, "replace an existing write key file")

	importKey := &cobra.Command{
		Use:   "import-write-key <file>",
		Short: "Make this peer a writer with a write key file copied from another peer",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			k, err := trust.ParseWriteKey(b, args[0])
			if err != nil {
				return err
			}
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			if !slices.Contains(cfg.Trust.WriteKeys, k.Public().String()) {
				return fmt.Errorf("%s is not among this cluster's trust.write_keys; trust it first with 'cluster-peer keys add-write-key %s' (on every peer)", k, k.Public())
			}
			path := cfg.WriteKeyPath(*dir)
			if err := k.Save(path, force); err != nil {
				return fmt.Errorf("%w (--force replaces it)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s into %s (mode 0600): this peer writes from its next start\n", k, path)
			return nil
		},
	}
	importKey.Flags().BoolVarP(&force, "force", "f", false, "replace an existing write key file")

	addKey := &cobra.Command{
		Use:   "add-write-key <public key>",
		Short: "Trust another write key (another curator's, or a rotated one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := trust.ParsePublicKey(args[0])
			if err != nil {
				return err
			}
			added := false
			if _, err := editConfig(*dir, func(c *peerconfig.Config) error { added = trustKey(c, k); return nil }); err != nil {
				return err
			}
			if !added {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already trusted\n", k)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trusting %s (from the next start)\n", k)
			return nil
		},
	}

	removeKey := &cobra.Command{
		Use:   "remove-write-key <public key>",
		Short: "Stop trusting a write key (after rotating it out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := trust.ParsePublicKey(args[0])
			if err != nil {
				return err
			}
			cfg, err := editConfig(*dir, func(c *peerconfig.Config) error {
				i := slices.Index(c.Trust.WriteKeys, k.String())
				if i < 0 {
					return fmt.Errorf("%s is not in trust.write_keys", k)
				}
				if len(c.Trust.WriteKeys) == 1 {
					return errors.New("it is the only write key: add the new one first ('keys add-write-key')")
				}
				c.Trust.WriteKeys = slices.Delete(c.Trust.WriteKeys, i, i+1)
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "no longer trusting %s (from the next start)\n", k)
			if own, err := trust.LoadWriteKey(cfg.WriteKeyPath(*dir)); err == nil && own.Public().Equal(k) {
				fmt.Fprintf(cmd.OutOrStdout(), "note: it is this peer's own write key (%s): replace it ('keys new-write-key --force' or 'keys import-write-key') or the peer will not start\n", cfg.WriteKeyPath(*dir))
			}
			return nil
		},
	}

	listKeys := &cobra.Command{
		Use:   "list",
		Short: "List the trusted write keys; * marks this peer's own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			own, _ := trust.LoadWriteKey(cfg.WriteKeyPath(*dir))
			for _, s := range cfg.Trust.WriteKeys {
				mark := " "
				if own != nil && own.Public().String() == s {
					mark = "*"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", mark, s)
			}
			if own == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "(this peer holds no write key: read-only)")
			}
			return nil
		},
	}

	newSecret := &cobra.Command{
		Use:   "new-secret",
		Short: "Make the cluster a private network: write a fresh cluster.secret",
		Long: `new-secret writes a random 32-byte cluster.secret. Peers without it cannot
connect at all; tickets printed afterwards carry it. Every existing peer needs
the same secret (re-init followers from a new ticket).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := make([]byte, trust.SecretSize)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			_, err := editConfig(*dir, func(c *peerconfig.Config) error {
				if c.Cluster.Secret != "" && !force {
					return errors.New("cluster.secret is already set; --force replaces it (every peer then needs the new one)")
				}
				c.Cluster.Secret = hex.EncodeToString(b)
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "wrote a new cluster.secret; tickets from now on carry it")
			return nil
		},
	}
	newSecret.Flags().BoolVarP(&force, "force", "f", false, "replace an existing secret")

	var inspect string
	var boot []string
	ticket := &cobra.Command{
		Use:   "ticket",
		Short: "Print a ticket (read key) for this cluster, or --inspect one",
		Long: `ticket prints one string holding the cluster name, its write public keys, this
peer's addresses (asked of the running peer, else taken from p2p.listen) and
cluster.secret when set. Anyone holding it can follow the cluster:
  cluster-follow <name> init <ticket>
It never lets them write.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if inspect != "" {
				t, err := trust.ParseTicket(inspect)
				if err != nil {
					return err
				}
				printTicket(cmd.OutOrStdout(), t)
				return nil
			}
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			addrs, err := ticketAddrs(cmd.Context(), cfg, *dir, boot)
			if err != nil {
				return err
			}
			t, err := peerconfig.TicketFor(cfg, addrs)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			return nil
		},
	}
	ticket.Flags().StringVar(&inspect, "inspect", "", "show what is inside this ticket")
	ticket.Flags().StringArrayVar(&boot, "bootstrap", nil, "/p2p multiaddr to put in the ticket instead of this peer's (repeatable)")

	keys.AddCommand(newKey, importKey, addKey, removeKey, listKeys, newSecret, ticket)
	return keys
}

// ticketAddrs are the bootstrap addresses of a ticket: the ones given, or
// the running peer's (loopback left out when it has others), or those the
// configuration implies; then cluster.bootstrap.
func ticketAddrs(ctx context.Context, cfg peerconfig.Config, dir string, given []string) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	add := func(s string) error {
		a, err := ma.NewMultiaddr(s)
		if err == nil {
			_, err = peer.AddrInfoFromP2pAddr(a)
		}
		if err != nil {
			return fmt.Errorf("bootstrap address %q: want a multiaddr ending in /p2p/<peer ID>: %v", s, err)
		}
		if !slices.ContainsFunc(out, a.Equal) {
			out = append(out, a)
		}
		return nil
	}
	for _, s := range given {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	if len(given) == 0 {
		var own []ma.Multiaddr
		if cl, err := client.New(cfg.API.Listen, 3*time.Second); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			id, err := cl.ID(cctx)
			cancel()
			if err == nil {
				own = id.Addresses
			}
		}
		if own == nil {
			sk, err := peerconfig.LoadIdentity(dir)
			if err != nil {
				return nil, err
			}
			pid, err := peer.IDFromPrivateKey(sk)
			if err != nil {
				return nil, err
			}
			if own, err = peerconfig.ConfiguredP2PAddrs(cfg, pid); err != nil {
				return nil, err
			}
		}
		if slices.ContainsFunc(own, func(a ma.Multiaddr) bool { return !manet.IsIPLoopback(a) }) {
			own = slices.DeleteFunc(own, manet.IsIPLoopback)
		}
		for _, a := range own {
			if err := add(a.String()); err != nil {
				return nil, err
			}
		}
		for _, s := range cfg.Cluster.Bootstrap {
			if err := add(s); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no address to put in the ticket: start the peer (its listen port is chosen at start) or pass --bootstrap")
	}
	return out, nil
}

func printTicket(w io.Writer, t trust.Ticket) {
	fmt.Fprintf(w, "cluster:    %s\n", t.Cluster)
	for i, k := range t.WriteKeys {
		label := "write keys:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-11s %s\n", label, k)
	}
	for i, a := range t.Bootstrap {
		label := "bootstrap:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-11s %s\n", label, a)
	}
	if len(t.Secret) > 0 {
		fmt.Fprintln(w, "network:    private (the ticket carries the network secret)")
	} else {
		fmt.Fprintln(w, "network:    open (no secret)")
	}
}
