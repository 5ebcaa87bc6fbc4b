// Command cluster-ctl is the client of a Pinring peer's REST API. Command
// names and flags follow ipfs-cluster-ctl.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/cli"
	"github.com/pinring/pinring/restapi/client"
)

type ctl struct {
	cmdAdd  *cobra.Command
	host    string
	copts   client.Options
	jsonOut bool
	enc     string
	timeout time.Duration
	debug   bool
	out     io.Writer
}

func (c *ctl) client() (*client.Client, error) {
	return client.NewWithOptions(c.host, 0, c.copts)
}

func (c *ctl) ctx() (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(context.Background(), c.timeout)
	}
	return context.WithCancel(context.Background())
}

func (c *ctl) asJSON() bool { return c.jsonOut || c.enc == "json" }

// seconds is a duration flag that also takes a plain number of seconds.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }
func (s *seconds) Type() string   { return "duration" }
func (s *seconds) Set(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q: want a duration like 30s or 2m, or a number of seconds", v)
	}
	*s = seconds(d)
	return nil
}

// print writes v as JSON (with --json) or with the human formatter.
func (c *ctl) print(v any, human func(io.Writer)) {
	if c.asJSON() {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		enc.Encode(v)
		return
	}
	human(c.out)
}

// run wraps a command body with a client and a context.
func (c *ctl) run(fn func(ctx context.Context, cl *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c.out = cmd.OutOrStdout()
		if c.enc != "" && c.enc != "text" && c.enc != "json" {
			return &cli.UsageError{Err: fmt.Errorf("--encoding %q: want text or json", c.enc)}
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		ctx, cancel := c.ctx()
		defer cancel()
		return fn(ctx, cl, args)
	}
}

func parseCid(s string) (api.Cid, error) {
	c, err := api.ParseCid(s)
	if err != nil {
		return api.Cid{}, &cli.UsageError{Err: err}
	}
	return c, nil
}

func main() { cli.Main(rootCmd()) }

// rootCmd is cluster-ctl's whole command tree.
func rootCmd() *cobra.Command {
	c := &ctl{}
	root := &cobra.Command{
		Use:   "cluster-ctl",
		Short: "Control a Pinring cluster through a peer's REST API",
		PersistentPreRun: func(*cobra.Command, []string) {
			cli.SetupLogging(c.debug)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&c.host, "host", "l", envOr("PINRING_CTL_HOST", client.DefaultHost), "peer API address: multiaddr, host:port or URL; several comma-separated: the next while one cannot be reached")
	pf.StringVarP(&c.copts.BasicAuth, "basic-auth", "a", os.Getenv("PINRING_CTL_BASIC_AUTH"), "user:password for a peer with api.basic_auth_credentials")
	pf.StringVar(&c.copts.Token, "token", os.Getenv("PINRING_CTL_TOKEN"), "bearer token from 'cluster-ctl token new'")
	pf.BoolVarP(&c.copts.HTTPS, "https", "s", false, "use HTTPS")
	pf.BoolVar(&c.copts.InsecureTLS, "no-check-certificate", false, "do not verify the peer's TLS certificate")
	pf.BoolVar(&c.jsonOut, "json", false, "print JSON for scripts")
	pf.StringVar(&c.enc, "encoding", "text", "output format: text or json")
	pf.StringVar(&c.enc, "enc", "text", "alias of --encoding")
	pf.VarP((*seconds)(&c.timeout), "timeout", "t", "give up after this long: a duration (30s, 2m) or seconds, as ipfs-cluster-ctl takes it (0: no limit)")
	pf.BoolVarP(&c.debug, "debug", "d", false, "debug logging")

	root.AddCommand(c.tokenCmd(), c.addCmd(), c.ecCmd(), c.ipfsCmd(), c.auditCmd())
	root.AddCommand(
		&cobra.Command{Use: "id", Short: "Show the peer's identity", Args: cobra.NoArgs,
			RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
				id, err := cl.ID(ctx)
				if err != nil {
					return err
				}
				c.print(id, func(w io.Writer) { printID(w, id) })
				return nil
			})},
		&cobra.Command{Use: "version", Short: "Show the peer's version", Args: cobra.NoArgs,
			RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
				v, err := cl.Version(ctx)
				if err != nil {
					return err
				}
				c.print(v, func(w io.Writer) { fmt.Fprintln(w, v.Version) })
				return nil
			})},
		c.peersCmd(), c.pinCmd(), c.statusCmd(), c.recoverCmd(), c.stateCmd(), c.healthCmd(),
		&cobra.Command{Use: "commands", Short: "List every command (for scripts and completion)", Hidden: true, Args: cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				var walk func(*cobra.Command)
				walk = func(x *cobra.Command) {
					if x.Hidden || x.Name() == "help" || x.Name() == "completion" {
						return
					}
					fmt.Fprintln(cmd.OutOrStdout(), x.CommandPath())
					for _, sub := range x.Commands() {
						walk(sub)
					}
				}
				walk(cmd.Root())
			}},
	)
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func printID(w io.Writer, id api.ID) {
	seen := ""
	if !id.LastSeen.IsZero() {
		state := "disconnected"
		if id.Connected {
			state = "connected"
		}
		seen = fmt.Sprintf(" | %s | last seen %s ago", state, time.Since(id.LastSeen).Round(time.Second))
	}
	role := ""
	if id.Role != "" {
		role = " | " + id.Role
	}
	if id.Admission != "" && id.Admission != id.Role {
		role += " | " + id.Admission
	}
	fmt.Fprintf(w, "%s | %s%s | Sees %d other peers%s\n", id.ID, id.Peername, role, max(0, len(id.ClusterPeers)-1), seen)
	if id.Audit != "" {
		fmt.Fprintf(w, "  > Audits: %s\n", id.Audit)
	}
	fmt.Fprintln(w, "  > Addresses:")
	for _, a := range id.Addresses {
		fmt.Fprintf(w, "    - %s\n", a)
	}
	if id.IPFS.Error != "" {
		fmt.Fprintf(w, "  > IPFS ERROR: %s\n", id.IPFS.Error)
		return
	}
	fmt.Fprintf(w, "  > IPFS: %s\n", id.IPFS.ID)
	for _, a := range id.IPFS.Addresses {
		fmt.Fprintf(w, "    - %s\n", a)
	}
}

func (c *ctl) peersCmd() *cobra.Command {
	peers := &cobra.Command{Use: "peers", Short: "List cluster peers"}
	peers.AddCommand(&cobra.Command{Use: "ls", Short: "List the cluster's peers", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			return cl.Peers(ctx, func(id api.ID) error { return c.emit(id, func(w io.Writer) { printID(w, id) }) })
		})})
	peers.AddCommand(&cobra.Command{Use: "rm <peer ID>", Short: "Make the peer at --host leave the cluster (a peer removes only itself; its pins move at once)",
		Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			id, err := peer.Decode(args[0])
			if err != nil {
				return fmt.Errorf("invalid peer ID %q: %v", args[0], err)
			}
			if err := cl.PeerRm(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "%s left the cluster\n", id)
			return nil
		})})
	var note string
	admission := func(use, short string, revoke bool) *cobra.Command {
		cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
				id, err := peer.Decode(args[0])
				if err != nil {
					return fmt.Errorf("invalid peer ID %q: %v", args[0], err)
				}
				set := cl.Admit
				if revoke {
					set = cl.Revoke
				}
				a, err := set(ctx, id, note)
				if err != nil {
					return err
				}
				return c.emit(a, func(w io.Writer) { printAdmission(w, a) })
			})}
		cmd.Flags().StringVar(&note, "note", "", "why, kept with the record (at most 255 bytes)")
		return cmd
	}
	peers.AddCommand(admission("admit <peer ID>", "Admit a peer: writers allocate pins to it (run it at a writer's peer)", false))
	peers.AddCommand(admission("revoke <peer ID>", "Revoke a peer: it is allocated nothing and its pins move (run it at a writer's peer)", true))
	peers.AddCommand(&cobra.Command{Use: "admissions", Short: "List the writers' admissions and revocations", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			as, err := cl.Admissions(ctx)
			if err != nil {
				return err
			}
			for _, a := range as {
				if err := c.emit(a, func(w io.Writer) { printAdmission(w, a) }); err != nil {
					return err
				}
			}
			return nil
		})})
	return peers
}

func printAdmission(w io.Writer, a api.Admission) {
	what := "admitted"
	if a.Revoked {
		what = "revoked"
	}
	note := ""
	if a.Note != "" {
		note = fmt.Sprintf(" (%q)", a.Note)
	}
	if !a.Verified.IsZero() {
		note += " | passed an audit at " + a.Verified.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s | %s by %s at %s%s\n", a.Peer, what, a.By, a.At.Format(time.RFC3339), note)
}

type pinFlags struct {
	replication, rmin, rmax int
	allocations, name, mode string
	expireIn                time.Duration
	metadata                []string
	origins                 string
	noStatus, wait          bool
	waitTimeout             time.Duration
	waitLimit               int
}

// register adds the pin flags to cmd; replicationShort is --replication's
// one-letter form ("r" for the pin commands; add keeps -r for
// --recursive, as ipfs-cluster-ctl does).
func (f *pinFlags) register(cmd *cobra.Command, replicationShort string) {
	fl := cmd.Flags()
	fl.IntVarP(&f.replication, "replication", replicationShort, 0, "sets both --rmin and --rmax")
	fl.IntVar(&f.rmin, "replication-min", 0, "minimum replicas (-1: every peer; 0: cluster default)")
	fl.IntVar(&f.rmin, "rmin", 0, "alias of --replication-min")
	fl.IntVar(&f.rmax, "replication-max", 0, "maximum replicas (-1: every peer; 0: cluster default)")
	fl.IntVar(&f.rmax, "rmax", 0, "alias of --replication-max")
	fl.StringVar(&f.allocations, "allocations", "", "comma-separated peer IDs to allocate to")
	fl.StringVarP(&f.name, "name", "n", "", "pin name")
	fl.StringVar(&f.mode, "mode", "recursive", "recursive or direct")
	fl.DurationVar(&f.expireIn, "expire-in", 0, "unpin after this long (e.g. 720h)")
	fl.StringArrayVar(&f.metadata, "metadata", nil, "key=value metadata (repeatable)")
	fl.StringVar(&f.origins, "origins", "", "comma-separated multiaddrs where the content is")
	fl.BoolVar(&f.noStatus, "no-status", false, "do not print the status afterwards")
	fl.BoolVarP(&f.wait, "wait", "w", false, "wait until the pin reaches its minimum replication factor (see --wait-limit)")
	fl.DurationVar(&f.waitTimeout, "wait-timeout", 0, "with --wait: give up after this long (0: no limit)")
	fl.IntVar(&f.waitLimit, "wait-limit", 0, "with --wait: return once this many allocated peers have pinned (0: the pin's minimum replication factor; every allocated peer for pins everywhere)")
}

func (f *pinFlags) options() (api.PinOptions, error) {
	var o api.PinOptions
	if f.replication != 0 {
		o.ReplicationFactorMin, o.ReplicationFactorMax = f.replication, f.replication
	}
	if f.rmin != 0 {
		o.ReplicationFactorMin = f.rmin
	}
	if f.rmax != 0 {
		o.ReplicationFactorMax = f.rmax
	}
	var err error
	if o.Mode, err = api.ParsePinMode(f.mode); err != nil {
		return o, &cli.UsageError{Err: err}
	}
	o.Name = f.name
	if o.UserAllocations, err = api.ParsePeers(f.allocations); err != nil {
		return o, &cli.UsageError{Err: fmt.Errorf("--allocations: %w", err)}
	}
	if f.expireIn < 0 {
		return o, &cli.UsageError{Err: fmt.Errorf("--expire-in %s: must be positive", f.expireIn)}
	}
	if f.expireIn > 0 {
		o.ExpireAt = time.Now().Add(f.expireIn).UTC()
	}
	for _, kv := range f.metadata {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, &cli.UsageError{Err: fmt.Errorf("--metadata %q: want key=value", kv)}
		}
		if o.Metadata == nil {
			o.Metadata = map[string]string{}
		}
		o.Metadata[k] = v
	}
	if o.Origins, err = api.ParseOrigins(f.origins); err != nil {
		return o, &cli.UsageError{Err: fmt.Errorf("--origins: %w", err)}
	}
	return o, nil
}

// eachOrAll calls one for every CID argument, or, with no arguments,
// collects everything all streams.
func eachOrAll[T any](args []string, one func(api.Cid) (T, error), all func(func(T) error) error, emit func(T) error) error {
	if len(args) == 0 {
		return all(emit)
	}
	for _, a := range args {
		ci, err := parseCid(a)
		if err != nil {
			return err
		}
		v, err := one(ci)
		if err != nil {
			return err
		}
		if err := emit(v); err != nil {
			return err
		}
	}
	return nil
}

// emit prints one item of a list as it arrives: a JSON object on a line
// of its own with --json, else with the human formatter. Lists are never
// held in memory.
func (c *ctl) emit(v any, human func(io.Writer)) error {
	if c.asJSON() {
		return json.NewEncoder(c.out).Encode(v)
	}
	human(c.out)
	return nil
}

// isPath tells /ipfs/... arguments from CIDs.
func isPath(s string) bool {
	return strings.HasPrefix(s, "/ipfs/") || strings.HasPrefix(s, "/ipns/") || strings.HasPrefix(s, "/ipld/")
}

func (c *ctl) pinCmd() *cobra.Command {
	pin := &cobra.Command{Use: "pin", Short: "Add, remove, list and update pins"}

	var af pinFlags
	add := &cobra.Command{Use: "add <cid|/ipfs/path>", Short: "Add a pin to the cluster", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			opts, err := af.options()
			if err != nil {
				return err
			}
			var p api.Pin
			if isPath(args[0]) {
				p, err = cl.PinPath(ctx, args[0], opts)
			} else {
				ci, perr := parseCid(args[0])
				if perr != nil {
					return perr
				}
				p, err = cl.Pin(ctx, ci, opts)
			}
			if err != nil {
				return err
			}
			return c.afterPin(ctx, cl, p, af, api.StatusPinned)
		})}
	af.register(add, "r")

	var rf pinFlags
	rm := &cobra.Command{Use: "rm <cid|/ipfs/path>", Short: "Remove a pin from the cluster", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			var p api.Pin
			var err error
			if isPath(args[0]) {
				p, err = cl.UnpinPath(ctx, args[0])
			} else {
				ci, perr := parseCid(args[0])
				if perr != nil {
					return perr
				}
				p, err = cl.Unpin(ctx, ci)
			}
			if err != nil {
				return err
			}
			return c.afterPin(ctx, cl, p, rf, api.StatusUnpinned)
		})}
	rm.Flags().BoolVar(&rf.noStatus, "no-status", false, "do not print the status afterwards")
	rm.Flags().BoolVarP(&rf.wait, "wait", "w", false, "wait until the pin is unpinned")
	rm.Flags().DurationVar(&rf.waitTimeout, "wait-timeout", 0, "with --wait: give up after this long")

	var filter string
	ls := &cobra.Command{Use: "ls [cid]", Short: "List the pinset (allocations)", Args: cobra.MaximumNArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			return eachOrAll(args, func(ci api.Cid) (api.Pin, error) { return cl.Allocation(ctx, ci) },
				func(fn func(api.Pin) error) error { return cl.Allocations(ctx, filter, fn) },
				func(p api.Pin) error { return c.emit(p, func(w io.Writer) { printPin(w, p) }) })
		})}
	ls.Flags().StringVar(&filter, "filter", "pin", "pin types: pin, meta-pin, clusterdag-pin, shard-pin, all")

	var uf pinFlags
	update := &cobra.Command{Use: "update <from-cid> <to-cid>", Short: "Pin a new version, keeping the options of the old one",
		Args: cobra.ExactArgs(2),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			from, err := parseCid(args[0])
			if err != nil {
				return err
			}
			to, err := parseCid(args[1])
			if err != nil {
				return err
			}
			opts, err := uf.options()
			if err != nil {
				return err
			}
			opts.PinUpdate = from
			p, err := cl.Pin(ctx, to, opts)
			if err != nil {
				return err
			}
			return c.afterPin(ctx, cl, p, uf, api.StatusPinned)
		})}
	uf.register(update, "r")
	pin.AddCommand(add, rm, ls, update)
	return pin
}

// afterPin waits (with --wait) and prints the status.
func (c *ctl) afterPin(ctx context.Context, cl *client.Client, p api.Pin, f pinFlags, target api.TrackerStatus) error {
	if f.wait {
		if err := f.waitFor(ctx, cl, target, p); err != nil {
			return err
		}
	}
	if f.noStatus {
		if c.asJSON() {
			c.print(p, nil)
		}
		return nil
	}
	g, err := settledStatus(ctx, cl, p, target)
	if err != nil {
		return err
	}
	c.print(g, func(w io.Writer) { printStatus(w, g) })
	return nil
}

// waitFor applies --wait-timeout (to all of pins together) and
// --wait-limit to waitFor.
func (f pinFlags) waitFor(ctx context.Context, cl *client.Client, target api.TrackerStatus, pins ...api.Pin) error {
	if f.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.waitTimeout)
		defer cancel()
	}
	for _, p := range pins {
		need := 0 // every peer concerned
		if target == api.StatusPinned {
			need = f.waitLimit
			if need == 0 {
				need = p.ReplicationFactorMin // -1 (everywhere): every peer
			}
		}
		if err := cl.WaitFor(ctx, p, target, need); err != nil {
			return err
		}
	}
	return nil
}

// settledStatus is the status of p once every peer concerned has heard of
// the change (a peer that has not says unpinned for a new pin), or after a
// second, whichever comes first: a status read at once would show the
// change only where it was made.
func settledStatus(ctx context.Context, cl *client.Client, p api.Pin, target api.TrackerStatus) (api.GlobalPinInfo, error) {
	unaware := api.StatusUnpinned
	if target == api.StatusUnpinned {
		unaware = api.StatusPinned
	}
	deadline := time.Now().Add(time.Second)
	for {
		g, err := cl.Status(ctx, p.Cid, false)
		if err != nil {
			return g, err
		}
		settled := true
		for pid, pi := range g.PeerMap {
			if client.Concerns(p, pid, target) && pi.Status == unaware {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return g, nil
		}
		select {
		case <-ctx.Done():
			return g, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printPin(w io.Writer, p api.Pin) {
	rf := "Repl. Factor: everywhere"
	if p.ReplicationFactorMax != -1 {
		rf = fmt.Sprintf("Repl. Factor: %d--%d", p.ReplicationFactorMin, p.ReplicationFactorMax)
	}
	alloc := "Allocations: [everywhere]"
	if len(p.Allocations) > 0 {
		s := make([]string, len(p.Allocations))
		for i, a := range p.Allocations {
			s[i] = a.String()
		}
		alloc = "Allocations: [" + strings.Join(s, " ") + "]"
	}
	exp := ""
	if !p.ExpireAt.IsZero() {
		exp = " | Exp: " + p.ExpireAt.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s | %s | %s | %s | %s | %s%s\n", p.Cid, p.Name, p.Type, rf, p.Mode, alloc, exp)
}

// expectedPeers are the peers that should hold g: its allocations, or
// (replication everywhere) every peer that reported on it.
func expectedPeers(g api.GlobalPinInfo) []string {
	if len(g.Allocations) > 0 {
		out := make([]string, len(g.Allocations))
		for i, a := range g.Allocations {
			out[i] = a.String()
		}
		return out
	}
	out := make([]string, 0, len(g.PeerMap))
	for id := range g.PeerMap {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// health classifies g: how many expected peers hold it, and whether any
// peer reports an error.
func health(g api.GlobalPinInfo) (pinned, expected int, errored bool) {
	exp := expectedPeers(g)
	for _, id := range exp {
		if pi, ok := g.PeerMap[id]; ok && pi.Status == api.StatusPinned {
			pinned++
		}
	}
	for _, pi := range g.PeerMap {
		if pi.Status.IsError() {
			errored = true
		}
	}
	return pinned, len(exp), errored
}

// printStatus prints one line per pin: its state on each peer that should
// hold it (then any error text, indented).
func printStatus(w io.Writer, g api.GlobalPinInfo) {
	var b strings.Builder
	b.WriteString(g.Cid.String())
	if g.Name != "" {
		b.WriteString(" " + strconv.Quote(g.Name))
	}
	pinned, expected, _ := health(g)
	fmt.Fprintf(&b, " [%d/%d]", pinned, expected)
	var errs []string
	for i, id := range expectedPeers(g) {
		sep := " | "
		if i > 0 {
			sep = ", "
		}
		pi, ok := g.PeerMap[id]
		label := pi.PeerName
		if label == "" {
			label = shortID(id)
		}
		st := "UNKNOWN"
		if ok {
			st = strings.ToUpper(string(pi.Status))
			if pi.Error != "" {
				errs = append(errs, fmt.Sprintf("    %s: %s", label, pi.Error))
			}
			switch {
			case strings.HasPrefix(pi.Audit, "failing"):
				st += " (AUDIT FAILING)"
				errs = append(errs, fmt.Sprintf("    %s: audit %s", label, pi.Audit))
			case !pi.LastVerified.IsZero():
				st += " (verified " + time.Since(pi.LastVerified).Round(time.Second).String() + " ago)"
			}
		}
		fmt.Fprintf(&b, "%s%s: %s", sep, label, st)
	}
	fmt.Fprintln(w, b.String())
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return id
}

// statuses prints each pin as it arrives and keeps only counts, for a
// summary of what needs attention at the end (not with --json).
type statuses struct {
	c                 *ctl
	ctx               context.Context
	cl                *client.Client
	n, under, errored int
}

func (c *ctl) statusSummary() *statuses { return &statuses{c: c} }

// with gives the summary a client, to report erasure-coded files by their
// shards.
func (s *statuses) with(ctx context.Context, cl *client.Client) *statuses {
	s.ctx, s.cl = ctx, cl
	return s
}

func (s *statuses) add(g api.GlobalPinInfo) error {
	if s.c.asJSON() {
		return s.c.emit(g, func(io.Writer) {})
	}
	if g.Type == api.ShardType {
		return nil // shown through the file they belong to
	}
	s.n++
	if g.Type == api.MetaType && s.cl != nil {
		line, ok := ecLine(s.ctx, s.cl, g)
		if !ok {
			s.under++
		}
		fmt.Fprintln(s.c.out, line)
		return nil
	}
	pinned, expected, e := health(g)
	if pinned < expected {
		s.under++
	}
	if e {
		s.errored++
	}
	printStatus(s.c.out, g)
	return nil
}

// ecLine is the one line of an erasure-coded file: how many of its shards
// are pinned somewhere, and whether that is all of them; how many a
// holder proved it holds in the asked peer's last audit of it, and how
// many failed theirs.
func ecLine(ctx context.Context, cl *client.Client, g api.GlobalPinInfo) (string, bool) {
	shards := strings.Split(g.Metadata["ec.shards"], ",")
	k, m := g.Metadata["ec.data-shards"], g.Metadata["ec.parity-shards"]
	pinned, verified, failing := 0, 0, 0
	for _, sh := range shards {
		c, err := api.ParseCid(sh)
		if err != nil {
			continue
		}
		sg, err := cl.Status(ctx, c, false)
		if err != nil {
			continue
		}
		for _, pi := range sg.PeerMap {
			if pi.Status == api.StatusPinned {
				pinned++
				break
			}
		}
		ok, bad := false, false
		for _, pi := range sg.PeerMap {
			ok = ok || pi.Audit == "verified"
			bad = bad || strings.HasPrefix(pi.Audit, "failing")
		}
		if ok {
			verified++
		}
		if bad {
			failing++
		}
	}
	state := "healthy"
	kn, _ := strconv.Atoi(k)
	switch {
	case pinned < kn:
		state = "UNREADABLE: fewer than K shards"
	case pinned < len(shards):
		state = "degraded: run 'cluster-ctl ec repair'"
	}
	audits := fmt.Sprintf(", %d verified by audits", verified)
	if failing > 0 {
		audits += fmt.Sprintf(", %d FAILING an audit", failing)
	}
	line := fmt.Sprintf("%s %q [EC %s+%s: %d/%d shards pinned%s] %s", g.Cid, g.Name, k, m, pinned, len(shards), audits, state)
	return line, pinned == len(shards)
}

func (s *statuses) print() {
	if s.n > 1 && !s.c.asJSON() {
		fmt.Fprintf(s.c.out, "%d pins: %d fully replicated, %d under-replicated, %d with errors\n",
			s.n, s.n-s.under, s.under, s.errored)
	}
}
func (c *ctl) statusCmd() *cobra.Command {
	var filter string
	var local bool
	cmd := &cobra.Command{Use: "status [cid...]", Short: "Show the status of pins on each peer",
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			if _, err := api.ParseStatusFilter(filter); err != nil {
				return &cli.UsageError{Err: fmt.Errorf("--filter: %w", err)}
			}
			sum := c.statusSummary().with(ctx, cl)
			err := eachOrAll(args, func(ci api.Cid) (api.GlobalPinInfo, error) { return cl.Status(ctx, ci, local) },
				func(fn func(api.GlobalPinInfo) error) error { return cl.StatusAll(ctx, filter, local, fn) }, sum.add)
			if err != nil {
				return err
			}
			sum.print()
			return nil
		})}
	cmd.Flags().StringVar(&filter, "filter", "", "only these statuses (comma list, e.g. error,queued)")
	cmd.Flags().BoolVar(&local, "local", false, "only this peer's status")
	return cmd
}

func (c *ctl) recoverCmd() *cobra.Command {
	var local bool
	cmd := &cobra.Command{Use: "recover [cid]", Short: "Retry failed pin and unpin operations", Args: cobra.MaximumNArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			sum := c.statusSummary()
			err := eachOrAll(args, func(ci api.Cid) (api.GlobalPinInfo, error) { return cl.Recover(ctx, ci, local) },
				func(fn func(api.GlobalPinInfo) error) error { return cl.RecoverAll(ctx, local, fn) }, sum.add)
			if err != nil {
				return err
			}
			sum.print()
			return nil
		})}
	cmd.Flags().BoolVar(&local, "local", false, "only on this peer")
	return cmd
}

func (c *ctl) stateCmd() *cobra.Command {
	state := &cobra.Command{Use: "state", Short: "Inspect the replicated pinset"}
	state.AddCommand(&cobra.Command{Use: "digest", Short: "Print the state digest (equal on converged peers)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			d, err := cl.Digest(ctx)
			if err != nil {
				return err
			}
			c.print(d, func(w io.Writer) { fmt.Fprintf(w, "%s %d pins\n", d.Digest, d.Pins) })
			return nil
		})})
	return state
}

func (c *ctl) tokenCmd() *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Issue and revoke API tokens (bearer JWTs)"}
	var ttl time.Duration
	var ro bool
	newCmd := &cobra.Command{Use: "new", Short: "Issue a token for the --basic-auth user", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			t, err := cl.TokenNew(ctx, ttl, ro)
			if err != nil {
				return err
			}
			c.print(t, func(w io.Writer) {
				fmt.Fprintln(w, t.Token)
				kind := "read-write"
				if t.ReadOnly {
					kind = "read-only"
				}
				fmt.Fprintf(os.Stderr, "%s token %s for %s, expires %s\n", kind, t.ID, t.User, t.ExpiresAt.Format(time.RFC3339))
			})
			return nil
		})}
	newCmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	newCmd.Flags().BoolVar(&ro, "read-only", false, "the token may list and read status, never write")
	revoke := &cobra.Command{Use: "revoke <token|id>", Short: "Revoke a token at this peer", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			id, err := cl.TokenRevoke(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "revoked token %s\n", id)
			return nil
		})}
	tok.AddCommand(newCmd, revoke)
	return tok
}
