package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/cli"
	"github.com/pinring/pinring/restapi/client"
)

func (c *ctl) addCmd() *cobra.Command {
	ap := api.AddParams{Chunker: "size-262144", HashFun: "sha2-256", Layout: "balanced", DataShards: 4, ParityShards: 2}
	var pf pinFlags
	var quiet, quieter, recursive, noStream bool
	cmd := &cobra.Command{Use: "add <file|dir>...", Short: "Add files to the cluster (as ipfs add) and pin them; --erasure stores Reed-Solomon shards",
		Args: cobra.MinimumNArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			opts, err := pf.options()
			if err != nil {
				return err
			}
			ap.PinOptions = opts
			if cmdFlagChanged(c.cmdAdd, "cid-version") && ap.CidVersion == 1 && !cmdFlagChanged(c.cmdAdd, "raw-leaves") {
				ap.RawLeaves = true // as ipfs add does
			}
			quiet = quiet || quieter
			progress := cli.IsTerminal(os.Stderr) && !quiet && !c.asJSON()
			var lines int
			start := time.Now()
			buffered := []api.AddedOutput{}
			// As ipfs add and ipfs-cluster-ctl add: a line per file and
			// directory, the root last.
			root, err := cl.Add(ctx, args, ap, func(o api.AddedOutput) error {
				if c.asJSON() && noStream {
					buffered = append(buffered, o)
					return nil
				}
				if c.asJSON() {
					return c.emit(o, func(io.Writer) {})
				}
				lines++
				if progress {
					fmt.Fprintf(os.Stderr, "\r%d added (%s)", lines, time.Since(start).Round(time.Second))
				}
				switch {
				case quieter:
				case quiet: // every CID, as ipfs add -q
					fmt.Fprintln(c.out, o.Cid)
				default:
					if progress {
						fmt.Fprint(os.Stderr, "\r\033[K")
					}
					fmt.Fprintf(c.out, "added %s %s\n", o.Cid, o.Name)
				}
				return nil
			})
			if progress {
				fmt.Fprintln(os.Stderr)
			}
			if err != nil {
				return err
			}
			if c.asJSON() && noStream {
				c.print(buffered, nil) // one JSON array
			}
			if quieter && !c.asJSON() {
				fmt.Fprintln(c.out, root)
			}
			if pf.wait && !ap.NoPin {
				pins, err := pinsOf(ctx, cl, root)
				if err != nil {
					return fmt.Errorf("--wait: %w", err)
				}
				return pf.waitFor(ctx, cl, api.StatusPinned, pins...)
			}
			return nil
		})}
	c.cmdAdd = cmd
	pf.register(cmd, "")
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "print only CIDs, one a line (the root last)")
	f.BoolVarP(&quieter, "quieter", "Q", false, "print only the root CID")
	f.BoolVarP(&recursive, "recursive", "r", false, "accepted for ipfs-cluster-ctl scripts: directories are always added whole")
	f.BoolVar(&noStream, "no-stream", false, "with --json: print one JSON array at the end instead of an object per file as it is added")
	f.BoolVar(&ap.Local, "local", false, "put the blocks in the contacted peer's kubo only; the allocated peers fetch them when they pin")
	f.BoolVarP(&ap.Hidden, "hidden", "H", false, "include files and directories whose names start with \".\" (left out by default, as ipfs add does)")
	f.StringVar(&ap.Chunker, "chunker", ap.Chunker, "chunker, as ipfs add's (size-N, rabin-min-avg-max, buzhash)")
	f.BoolVar(&ap.RawLeaves, "raw-leaves", false, "raw blocks as leaves (default with --cid-version 1)")
	f.IntVar(&ap.CidVersion, "cid-version", 0, "CID version, 0 or 1")
	f.StringVar(&ap.HashFun, "hash", ap.HashFun, "hash function")
	f.StringVar(&ap.Layout, "layout", ap.Layout, "DAG layout: balanced or trickle")
	f.BoolVar(&ap.Wrap, "wrap-with-directory", false, "wrap the files in a directory")
	f.StringVar(&ap.Format, "format", "unixfs", "unixfs (add files as UnixFS DAGs) or car (import one CAR file with one root: its blocks as they are, its root pinned)")
	f.BoolVar(&ap.NoPin, "no-pin", false, "store the blocks without pinning")
	f.BoolVar(&ap.Erasure, "erasure", false, "store the file as Reed-Solomon shards on distinct peers")
	f.IntVar(&ap.DataShards, "data-shards", ap.DataShards, "with --erasure: data shards (K)")
	f.IntVar(&ap.ParityShards, "parity-shards", ap.ParityShards, "with --erasure: parity shards (M): any M may be lost")
	return cmd
}

// pinsOf returns the pins that hold an added root: the root's own pin,
// or the shards of an erasure-coded file.
func pinsOf(ctx context.Context, cl *client.Client, root api.Cid) ([]api.Pin, error) {
	p, err := cl.Allocation(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("reading the pin of %s: %w", root, err)
	}
	if p.Type != api.MetaType {
		return []api.Pin{p}, nil
	}
	var shards []api.Pin
	for _, s := range strings.Split(p.Metadata["ec.shards"], ",") {
		c, err := api.ParseCid(s)
		if err != nil {
			return nil, fmt.Errorf("shard %q of %s: %w", s, root, err)
		}
		sp, err := cl.Allocation(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("reading the pin of shard %s of %s: %w", c, root, err)
		}
		shards = append(shards, sp)
	}
	return shards, nil
}

func cmdFlagChanged(cmd *cobra.Command, name string) bool {
	return cmd != nil && cmd.Flags().Changed(name)
}

func (c *ctl) ecCmd() *cobra.Command {
	ec := &cobra.Command{Use: "ec", Short: "Erasure-coded files: read back and repair"}
	var out string
	get := &cobra.Command{Use: "get <cid>", Short: "Write an erasure-coded file from any K of its shards", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			ci, err := parseCid(args[0])
			if err != nil {
				return err
			}
			var w io.Writer = c.out
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			start := time.Now()
			n, err := cl.ECGet(ctx, ci, w)
			if err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(os.Stderr, "wrote %d bytes to %s (%.1f MiB/s)\n", n, out, float64(n)/(1<<20)/max(time.Since(start).Seconds(), 0.001))
			}
			return nil
		})}
	get.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	repair := &cobra.Command{Use: "repair [cid]", Short: "Rebuild shards whose peers are gone and pin them on live peers", Args: cobra.MaximumNArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			var ci *api.Cid
			if len(args) == 1 {
				x, err := parseCid(args[0])
				if err != nil {
					return err
				}
				ci = &x
			}
			res, err := cl.ECRepair(ctx, ci)
			if err != nil {
				return err
			}
			c.print(res, func(w io.Writer) {
				if len(res) == 0 {
					fmt.Fprintln(w, "nothing to repair: every shard is on a live peer")
				}
				for _, r := range res {
					if r.Error != "" {
						fmt.Fprintf(w, "%s: %s\n", r.Cid, r.Error)
						continue
					}
					fmt.Fprintf(w, "%s: rebuilt shards %v onto %v\n", r.Cid, r.Rebuilt, r.To)
				}
			})
			return nil
		})}
	ec.AddCommand(get, repair)
	return ec
}

// auditCmd challenges the peers holding a pin to prove it.
func (c *ctl) auditCmd() *cobra.Command {
	var only string
	cmd := &cobra.Command{Use: "audit <cid>", Short: "Challenge the peers a pin is allocated to to prove their kubo holds it (run it at a writer's peer)",
		Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *client.Client, args []string) error {
			ci, err := parseCid(args[0])
			if err != nil {
				return err
			}
			var pid peer.ID
			if only != "" {
				if pid, err = peer.Decode(only); err != nil {
					return fmt.Errorf("invalid peer ID %q: %v", only, err)
				}
			}
			rs, err := cl.Audit(ctx, ci, pid)
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range rs {
				if !r.OK {
					failed++
				}
				if err := c.emit(r, func(w io.Writer) {
					verdict := "PROVED"
					switch {
					case r.Fetching:
						verdict = "FETCHING (no proof yet, no failure): " + r.Error
					case !r.OK:
						verdict = "FAILED: " + r.Error
					}
					fmt.Fprintf(w, "%s %s: %s (%d blocks, %d bytes, %d ms)\n", r.Peer, r.Peername, verdict, r.Blocks, r.Bytes, r.TookMs)
				}); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d peers did not prove they hold %s", failed, len(rs), ci)
			}
			return nil
		})}
	cmd.Flags().StringVar(&only, "peer", "", "audit only this peer")
	return cmd
}
