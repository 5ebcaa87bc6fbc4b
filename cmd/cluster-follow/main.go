// Command cluster-follow runs followers: from one machine a home user
// follows one or several clusters, each from its ticket (read key), each
// with its own state directory, donating disk to pin what each cluster
// allocates to it. A follower never writes a pinset.
//
//	cluster-follow <name> init <ticket>
//	cluster-follow <name> run
//	cluster-follow <name> info
//	cluster-follow <name> status
//	cluster-follow list
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/cli"
	pinpeer "github.com/pinring/pinring/peer"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/client"
	"github.com/pinring/pinring/trust"
)

// apiAddrFile holds the local API address of a running follower; it is
// removed when the follower stops.
const apiAddrFile = "api.addr"

// perCluster are the commands that take a name first.
var perCluster = []string{"init", "run", "info", "status"}

func baseDir() string { return cli.Dir("PINRING_FOLLOW_PATH", ".pinring-follow") }

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func clusterDir(name string) (string, error) {
	if !validName.MatchString(name) {
		return "", &cli.UsageError{Err: fmt.Errorf("%q is not a usable name: want 1-64 letters, digits, '.', '_' or '-'", name)}
	}
	return filepath.Join(baseDir(), name), nil
}

// followerDefaults are a peer's defaults tuned for a home machine that
// follows several clusters: ports chosen at start so that followers never
// collide (the API address is written to api.addr), and no repair (it
// writes).
func followerDefaults() peerconfig.Config {
	cfg := peerconfig.DefaultConfig()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.P2P.Listen = []string{"/ip4/0.0.0.0/tcp/0"}
	cfg.Repair.Enabled = false
	return cfg
}

func loadConfig(dir, name string) (peerconfig.Config, error) {
	cfg := followerDefaults()
	if err := config.Load(filepath.Join(dir, peerconfig.ConfigFile), &cfg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return cfg, fmt.Errorf("not following %q: run 'cluster-follow %s init <ticket>' first", name, name)
		}
		return cfg, err
	}
	if err := config.ApplyEnv(&cfg, os.LookupEnv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// open finds the configuration of the cluster followed as name.
func open(name string) (string, peerconfig.Config, error) {
	dir, err := clusterDir(name)
	if err != nil {
		return "", peerconfig.Config{}, err
	}
	cfg, err := loadConfig(dir, name)
	return dir, cfg, err
}

// runningClient returns a client of the follower's API when it runs.
func runningClient(ctx context.Context, dir string) (*client.Client, string, bool) {
	cl, addr, starting := answeringClient(ctx, dir)
	if cl == nil || starting != "" {
		return nil, addr, false
	}
	return cl, addr, true
}

// answeringClient returns a client of the follower's API when it answers:
// starting is what a follower that is still starting says it does ("" once
// it is ready).
func answeringClient(ctx context.Context, dir string) (cl *client.Client, addr, starting string) {
	b, err := os.ReadFile(filepath.Join(dir, apiAddrFile))
	if err != nil {
		return nil, "", ""
	}
	addr = strings.TrimSpace(string(b))
	cl, err = client.New(addr, 5*time.Second)
	if err != nil {
		return nil, addr, ""
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var e api.Error
	switch _, err := cl.ID(cctx); {
	case err == nil:
		return cl, addr, ""
	case errors.As(err, &e) && e.Code == http.StatusServiceUnavailable:
		return cl, addr, e.Message
	default:
		return nil, addr, ""
	}
}

// notReady is the error of a command that needs the follower running.
func notReady(ctx context.Context, name, dir string) error {
	if _, _, starting := answeringClient(ctx, dir); starting != "" {
		return fmt.Errorf("%q is not ready yet: %s", name, starting)
	}
	return fmt.Errorf("%q is not running: start it with 'cluster-follow %s run'", name, name)
}

// reorder turns "cluster-follow NAME CMD args" into "cluster-follow CMD
// NAME args" for cobra.
func reorder(args []string) []string {
	first := slices.IndexFunc(args, func(a string) bool { return !strings.HasPrefix(a, "-") })
	if first < 0 || first+1 >= len(args) || !slices.Contains(perCluster, args[first+1]) || slices.Contains(perCluster, args[first]) {
		return args
	}
	out := slices.Clone(args)
	out[first], out[first+1] = out[first+1], out[first]
	return out
}

func main() {
	var debug bool
	root := &cobra.Command{
		Use:   "cluster-follow",
		Short: "Follow Pinring clusters from tickets, donating disk",
		Long: `cluster-follow joins Pinring clusters as a follower: it syncs the pinset,
pins in its kubo what the cluster allocates to it, serves the pinset's blocks
to others, and never writes. Each cluster followed has a name of your choosing
and its own directory under $PINRING_FOLLOW_PATH (default ~/.pinring-follow).

  cluster-follow <name> init <ticket>   set up from a ticket (a read key)
  cluster-follow <name> run             follow until interrupted
  cluster-follow <name> info            what is configured, and whether it runs
  cluster-follow <name> status          the pins and their status here
  cluster-follow list                   every cluster followed

Any setting can be overridden with PINRING_<SECTION>_<KEY>, e.g.
PINRING_IPFS_API=/ip4/127.0.0.1/tcp/5002 for another kubo.`,
		PersistentPreRun: func(*cobra.Command, []string) { cli.SetupLogging(debug) },
	}
	root.PersistentFlags().BoolVarP(&debug, "debug", "d", false, "debug logging")
	root.SetArgs(reorder(os.Args[1:]))
	root.AddCommand(initCmd(), runCmd(), infoCmd(), statusCmd(), listCmd())
	cli.Main(root)
}

func initCmd() *cobra.Command {
	var force bool
	var ipfsAPI string
	c := &cobra.Command{
		Use:   "init <name> <ticket>",
		Short: "Set up following the ticket's cluster under name",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			dir, err := clusterDir(name)
			if err != nil {
				return err
			}
			t, err := trust.ParseTicket(args[1])
			if err != nil {
				return err
			}
			path := filepath.Join(dir, peerconfig.ConfigFile)
			cfg := followerDefaults()
			if _, err := os.Stat(path); err == nil {
				if !force {
					return fmt.Errorf("already following %q (%s); --force takes the new ticket's keys, addresses and secret, keeping the state", name, dir)
				}
				if err := config.Load(path, &cfg); err != nil {
					return err
				}
			}
			// Environment overrides given at init are written into the file.
			if err := config.ApplyEnv(&cfg, os.LookupEnv); err != nil {
				return err
			}
			cfg.ApplyTicket(t)
			if ipfsAPI != "" {
				cfg.IPFS.API = ipfsAPI
			}
			if cfg.Cluster.Peername == peerconfig.DefaultConfig().Cluster.Peername {
				cfg.Cluster.Peername += "-" + name
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := config.Save(path, &cfg); err != nil {
				return err
			}
			if _, err := peerconfig.LoadIdentity(dir); err != nil {
				if _, err := peerconfig.NewIdentity(dir); err != nil {
					return fmt.Errorf("creating the peer key: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "following cluster %q as %q in %s (kubo at %s)\nstart it with: cluster-follow %s run\n",
				t.Cluster, name, dir, cfg.IPFS.API, name)
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "re-initialise from a new ticket, keeping the peer key and the state")
	c.Flags().StringVar(&ipfsAPI, "ipfs-api", "", "multiaddr of the kubo RPC API to use (default /ip4/127.0.0.1/tcp/5001, may be shared)")
	return c
}

func runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run <name>",
		Short: "Follow the cluster until interrupted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			dir, cfg, err := open(name)
			if err != nil {
				return err
			}
			if cl, addr, _ := answeringClient(cmd.Context(), dir); cl != nil {
				return fmt.Errorf("%q is already running (API at %s)", name, addr)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The API's address is written as soon as it listens, so that
			// info can say what a follower still starting does.
			addrFile := filepath.Join(dir, apiAddrFile)
			var written error
			wrote := false // removed on the way out only if this run wrote it
			defer func() {
				if wrote {
					os.Remove(addrFile)
				}
			}()
			p, err := pinpeer.New(ctx, cfg, dir, pinpeer.OnAPIListening(func(addr string) {
				written = os.WriteFile(addrFile, []byte(addr+"\n"), 0o600)
				wrote = written == nil
			}))
			if err != nil {
				return err
			}
			if written != nil {
				p.Close()
				return written
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "following cluster %q as peer %s\nlocal API (read-only): http://%s\n", cfg.Cluster.Name, p.PeerID(), p.APIAddr())
			if p.CanWrite() {
				fmt.Fprintln(out, "note: a write key is configured: this follower can write")
			}
			if cli.IsTerminal(os.Stderr) {
				go showSync(ctx, p)
			}
			return p.Run(ctx, out)
		},
	}
}

func infoCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "info <name>",
		Short: "Show what is configured for name, and whether it runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			dir, cfg, err := open(name)
			if err != nil {
				return err
			}
			info := followInfo{Name: name, Dir: dir, Cluster: cfg.Cluster.Name, WriteKeys: cfg.Trust.WriteKeys,
				Bootstrap: cfg.Cluster.Bootstrap, Private: cfg.Cluster.Secret != "", IPFSAPI: cfg.IPFS.API}
			if sk, err := peerconfig.LoadIdentity(dir); err == nil {
				if pid, err := peer.IDFromPrivateKey(sk); err == nil {
					info.PeerID = pid.String()
				}
			}
			if cl, addr, starting := answeringClient(cmd.Context(), dir); cl != nil && starting != "" {
				info.Running, info.API, info.Starting = true, addr, starting
			} else if cl != nil {
				info.Running, info.API = true, addr
				if d, err := cl.Digest(cmd.Context()); err == nil {
					info.Pins = &d.Pins
				}
				n := 0
				if err := cl.Peers(cmd.Context(), func(id api.ID) error {
					if id.Connected {
						n++
					}
					return nil
				}); err == nil {
					info.ConnectedPeers = &n
				}
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(info)
			}
			info.print(cmd.OutOrStdout())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

type followInfo struct {
	Name           string   `json:"name"`
	Dir            string   `json:"dir"`
	Cluster        string   `json:"cluster"`
	PeerID         string   `json:"peer_id"`
	WriteKeys      []string `json:"write_keys"`
	Bootstrap      []string `json:"bootstrap"`
	Private        bool     `json:"private_network"`
	IPFSAPI        string   `json:"ipfs_api"`
	Running        bool     `json:"running"`
	Starting       string   `json:"starting,omitempty"` // what a follower still starting does
	API            string   `json:"api,omitempty"`
	Pins           *uint64  `json:"pins,omitempty"`
	ConnectedPeers *int     `json:"connected_peers,omitempty"`
}

func (f followInfo) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", f.Name)
	fmt.Fprintf(tw, "cluster:\t%s\n", f.Cluster)
	fmt.Fprintf(tw, "directory:\t%s\n", f.Dir)
	fmt.Fprintf(tw, "peer ID:\t%s\n", f.PeerID)
	fmt.Fprintf(tw, "write keys:\t%s\n", strings.Join(f.WriteKeys, ", "))
	fmt.Fprintf(tw, "bootstrap:\t%s\n", strings.Join(f.Bootstrap, ", "))
	network := "open"
	if f.Private {
		network = "private (secret configured)"
	}
	fmt.Fprintf(tw, "network:\t%s\n", network)
	fmt.Fprintf(tw, "kubo API:\t%s\n", f.IPFSAPI)
	if f.Running && f.Starting != "" {
		fmt.Fprintf(tw, "running:\tstarting, local API http://%s\n", f.API)
		fmt.Fprintf(tw, "starting:\t%s\n", strings.TrimPrefix(f.Starting, "the peer is starting: "))
	} else if f.Running {
		fmt.Fprintf(tw, "running:\tyes, local API http://%s\n", f.API)
		if f.Pins != nil {
			fmt.Fprintf(tw, "pinset:\t%d pins\n", *f.Pins)
		}
		if f.ConnectedPeers != nil {
			fmt.Fprintf(tw, "connected peers:\t%d\n", *f.ConnectedPeers)
		}
	} else {
		fmt.Fprintf(tw, "running:\tno (cluster-follow %s run)\n", f.Name)
	}
	tw.Flush()
}

func statusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status <name>",
		Short: "List the cluster's pins and their status on this follower",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			dir, _, err := open(name)
			if err != nil {
				return err
			}
			cl, _, ok := runningClient(cmd.Context(), dir)
			if !ok {
				return notReady(cmd.Context(), name, dir)
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			counts := map[api.TrackerStatus]int{}
			total := 0
			err = cl.StatusAll(cmd.Context(), "", true, func(g api.GlobalPinInfo) error {
				for _, pi := range g.PeerMap { // local: exactly one entry
					total++
					counts[pi.Status]++
					if asJSON {
						return enc.Encode(g)
					}
					line := fmt.Sprintf("%s %s", g.Cid, pi.Status)
					if g.Name != "" {
						line += fmt.Sprintf(" %q", g.Name)
					}
					if pi.Error != "" {
						line += ": " + pi.Error
					}
					fmt.Fprintln(out, line)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !asJSON {
				var parts []string
				for _, s := range []api.TrackerStatus{api.StatusPinned, api.StatusPinning, api.StatusPinQueued,
					api.StatusRemote, api.StatusPinError, api.StatusUnexpectedlyUnpinned} {
					if counts[s] > 0 {
						parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
					}
				}
				fmt.Fprintf(out, "%d pins: %s\n", total, strings.Join(parts, ", "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per pin")
	return c
}

func listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every cluster followed from this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := baseDir()
			entries, err := os.ReadDir(base)
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "following no cluster yet (%s is empty): cluster-follow <name> init <ticket>\n", base)
				return nil
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCLUSTER\tSTATE\tAPI")
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				dir := filepath.Join(base, e.Name())
				cfg := followerDefaults()
				if err := config.Load(filepath.Join(dir, peerconfig.ConfigFile), &cfg); err != nil {
					continue
				}
				state, addr := "stopped", "-"
				if cl, a, starting := answeringClient(cmd.Context(), dir); cl != nil {
					state, addr = "running", "http://"+a
					if starting != "" {
						state = "starting"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name(), cfg.Cluster.Name, state, addr)
			}
			return tw.Flush()
		},
	}
}

// showSync prints the initial sync's progress on a terminal until the
// pinset has been caught up for a few seconds.
func showSync(ctx context.Context, p *pinpeer.Peer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	calm := 0
	for calm < 5 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		height, queued := p.SyncProgress(ctx)
		if queued > 0 {
			calm = 0
			fmt.Fprintf(os.Stderr, "\rsyncing the pinset: height %d, %d deltas to merge   ", height, queued)
			continue
		}
		calm++
		fmt.Fprintf(os.Stderr, "\rpinset synced: height %d                              ", height)
	}
	fmt.Fprintln(os.Stderr)
}
