package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/units"
	"github.com/pinring/pinring/restapi/client"
)

func (c *ctl) healthCmd() *cobra.Command {
	health := &cobra.Command{
		Use:   "health",
		Short: "This peer's health (kubo, cluster peers connected, when each was last heard); metrics and alerts",
		Long: `Without a subcommand: the peer's report on itself — whether its kubo answers,
whether it is alone, and every cluster peer with whether it is connected and
when it was last heard. Exits 1 when the peer is unhealthy (kubo unreachable).`,
		Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			h, err := cl.Health(ctx)
			if err != nil {
				return err
			}
			c.print(h, func(w io.Writer) { printHealth(w, h) })
			if !h.Healthy {
				return fmt.Errorf("unhealthy: %s", h.Kubo.Error)
			}
			return nil
		}),
	}
	var graphFile string
	graph := &cobra.Command{
		Use:   "graph",
		Short: "Print the connectivity graph (cluster peers, their kubos, connections) as Graphviz dot",
		Long: `graph prints the cluster's connectivity in Graphviz dot, as the peer at --host
knows it (each peer announces its connections). Render it with:
  cluster-ctl health graph | dot -Tsvg > cluster.svg`,
		Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			g, err := cl.Graph(ctx)
			if err != nil {
				return err
			}
			w := c.out
			if graphFile != "" {
				f, err := os.Create(graphFile)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			if c.asJSON() {
				return json.NewEncoder(w).Encode(g)
			}
			writeDot(w, g)
			return nil
		}),
	}
	graph.Flags().StringVarP(&graphFile, "file", "f", "", "write to this file instead of standard output")
	health.AddCommand(graph)
	health.AddCommand(&cobra.Command{
		Use:   "metrics [name]",
		Short: "Show the latest valid metric of every peer (without a name: list the metric names)",
		Args:  cobra.MaximumNArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			if len(args) == 0 {
				names, err := cl.MetricNames(ctx)
				if err != nil {
					return err
				}
				c.print(names, func(w io.Writer) {
					for _, n := range names {
						fmt.Fprintln(w, n)
					}
				})
				return nil
			}
			ms, err := cl.Metrics(ctx, args[0])
			if err != nil {
				return err
			}
			c.print(ms, func(w io.Writer) {
				if len(ms) == 0 {
					fmt.Fprintf(w, "no peer has a valid %q metric\n", args[0])
				}
				for _, m := range ms {
					fmt.Fprintf(w, "%s | %s: %s | expires in %s\n", m.Peer, m.Name, humanValue(m),
						time.Until(time.Unix(0, m.Expire)).Round(time.Second))
				}
			})
			return nil
		}),
	}, &cobra.Command{
		Use:   "alerts",
		Short: "Show the alerts raised: peers whose metrics expired",
		Args:  cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			as, err := cl.Alerts(ctx)
			if err != nil {
				return err
			}
			c.print(as, func(w io.Writer) {
				if len(as) == 0 {
					fmt.Fprintln(w, "no alerts")
				}
				for _, a := range as {
					fmt.Fprintf(w, "%s (%s) | %s expired | at %s\n", a.Peer, a.Peername, a.Name, a.TriggeredAt.Local().Format(time.RFC3339))
				}
			})
			return nil
		}),
	}, &cobra.Command{
		Use:   "bandwidth",
		Short: "Show the peer's libp2p traffic by protocol since it started",
		Args:  cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			bw, err := cl.Bandwidth(ctx)
			if err != nil {
				return err
			}
			c.print(bw, func(w io.Writer) {
				protos := slices.Sorted(maps.Keys(bw))
				if len(protos) == 0 {
					fmt.Fprintln(w, "no libp2p traffic yet")
				}
				for _, p := range protos {
					b := bw[p]
					name := p
					if name == "" {
						name = "(connection set-up)"
					}
					fmt.Fprintf(w, "%s | in %s (%s/s) | out %s (%s/s)\n", name, units.Bytes(uint64(b.TotalIn)),
						units.Bytes(uint64(b.RateIn)), units.Bytes(uint64(b.TotalOut)), units.Bytes(uint64(b.RateOut)))
				}
			})
			return nil
		}),
	})
	return health
}

// ipfsCmd is what acts on the peers' kubos.
func (c *ctl) ipfsCmd() *cobra.Command {
	ipfs := &cobra.Command{Use: "ipfs", Short: "Act on the peers' kubo daemons"}
	var local bool
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Run kubo's garbage collection on every peer (blocks no pin holds are removed)",
		Long: `gc asks every cluster peer to run "ipfs repo gc" on its kubo: blocks that no
pin holds are deleted there, including content a volunteer's kubo kept for its
own use without pinning it. Only a peer holding a write key can ask the others;
--local collects only the contacted peer's kubo.`,
		Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *client.Client, _ []string) error {
			g, err := cl.RepoGC(ctx, local)
			if err != nil {
				return err
			}
			failed := 0
			c.print(g, func(w io.Writer) {
				for _, pid := range slices.Sorted(maps.Keys(g.PeerMap)) {
					r := g.PeerMap[pid]
					if r.Error != "" {
						failed++
						fmt.Fprintf(w, "%s (%s) | error: %s\n", pid, r.Peername, r.Error)
						continue
					}
					fmt.Fprintf(w, "%s (%s) | %d blocks removed\n", pid, r.Peername, len(r.Keys))
				}
			})
			if failed > 0 {
				return fmt.Errorf("garbage collection failed on %d of %d peers", failed, len(g.PeerMap))
			}
			return nil
		}),
	}
	gc.Flags().BoolVar(&local, "local", false, "only the contacted peer's kubo")
	ipfs.AddCommand(gc)
	return ipfs
}

// humanValue shows byte metrics in binary units.
func humanValue(m api.Metric) string {
	if m.Name != "freespace" {
		return m.Value
	}
	n, err := strconv.ParseUint(m.Value, 10, 64)
	if err != nil {
		return m.Value
	}
	return units.Bytes(n)
}

func printHealth(w io.Writer, h api.Health) {
	kubo := "ok"
	if !h.Kubo.OK {
		kubo = h.Kubo.Error
	}
	fmt.Fprintf(w, "kubo: %s\n", kubo)
	if h.Pinset.Error != "" {
		fmt.Fprintf(w, "pinset: %s\n", h.Pinset.Error)
	}
	if h.Audits.Error != "" {
		fmt.Fprintf(w, "audits: %s\n", h.Audits.Error)
	}
	if h.Store.Bytes >= 0 {
		fmt.Fprintf(w, "store: %s on disk, epoch %d, history height %d, %d pins", units.Bytes(uint64(h.Store.Bytes)), h.Store.Epoch, h.Store.Height, h.Store.Pins)
		if h.Store.History >= 0 {
			fmt.Fprintf(w, "; %d history entries for %d live", h.Store.History, h.Store.Live)
		}
		if h.Store.LastDrop != nil {
			fmt.Fprintf(w, "; an old epoch dropped %s ago", time.Since(*h.Store.LastDrop).Round(time.Second))
		}
		fmt.Fprintln(w)
	}
	state := fmt.Sprintf("%d of %d known peers connected", h.ConnectedPeers, len(h.ClusterPeers))
	if h.Alone {
		state += " — ALONE, still trying"
	}
	fmt.Fprintf(w, "cluster: %s\n", state)
	for _, p := range h.ClusterPeers {
		conn := "disconnected"
		if p.Connected {
			conn = "connected"
		}
		seen := "never heard"
		if !p.LastSeen.IsZero() {
			seen = "last heard " + time.Since(p.LastSeen).Round(time.Second).String() + " ago"
		}
		audit := ""
		if p.Audit != "" {
			audit = ", audits: " + p.Audit
		}
		fmt.Fprintf(w, "  %s %s (%s): %s, %s%s\n", p.ID, p.Peername, p.Role, conn, seen, audit)
	}
}

// writeDot prints the connectivity graph in Graphviz dot: cluster peers as
// boxes, their kubos as ellipses, an edge per connection a peer announced.
func writeDot(w io.Writer, g api.Graph) {
	fmt.Fprintln(w, "digraph cluster {")
	fmt.Fprintln(w, "  node [fontname=\"sans-serif\"];")
	ids := make([]string, 0, len(g.ClusterLinks))
	for id := range g.ClusterLinks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	label := func(id string) string {
		n := g.IDToPeername[id]
		short := id
		if len(short) > 8 {
			short = short[len(short)-8:]
		}
		if n == "" {
			return short
		}
		return n + "\\n" + short
	}
	for _, id := range ids {
		style := "shape=box"
		if id == g.ClusterID.String() {
			style += ", style=bold"
		}
		if g.ClusterTrustLinks[id] {
			style += ", peripheries=2" // holds a write key
		}
		fmt.Fprintf(w, "  %q [label=%q, %s];\n", id, label(id), style)
		if k, ok := g.ClusterToIPFS[id]; ok {
			fmt.Fprintf(w, "  %q [label=%q, shape=ellipse, color=gray];\n", "ipfs-"+k.String(), "kubo\\n"+k.String()[max(0, len(k.String())-8):])
			fmt.Fprintf(w, "  %q -> %q [style=dashed, color=gray];\n", id, "ipfs-"+k.String())
		}
	}
	for _, id := range ids {
		for _, to := range g.ClusterLinks[id] {
			fmt.Fprintf(w, "  %q -> %q;\n", id, to.String())
		}
	}
	// Kubo to kubo: what content travels over.
	for _, id := range ids {
		k, ok := g.ClusterToIPFS[id]
		if !ok {
			continue
		}
		for _, to := range g.IPFSLinks[k.String()] {
			fmt.Fprintf(w, "  %q -> %q [color=gray];\n", "ipfs-"+k.String(), "ipfs-"+to.String())
		}
	}
	fmt.Fprintln(w, "}")
}
