package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/restapi/client"
)

func (c *ctl) healthCmd() *cobra.Command {
	health := &cobra.Command{Use: "health", Short: "Cluster health: metrics and alerts"}
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
	})
	return health
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
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
