package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/internal/cli"
	"github.com/pinring/pinring/internal/units"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/trust"
)

// progressFn prints a count on standard error when it is a terminal.
func progressFn(verb string) func(int) {
	if !cli.IsTerminal(os.Stderr) {
		return nil
	}
	return func(n int) { fmt.Fprintf(os.Stderr, "\r%s %d pins…", verb, n) }
}

func stateCmd(dir *string) *cobra.Command {
	st := &cobra.Command{Use: "state", Short: "Export, import, inspect or wipe the pinset of a stopped peer"}
	open := func(cmd *cobra.Command, create bool) (*crdtstate.Offline, error) {
		cfg, err := peerconfig.LoadConfig(*dir)
		if err != nil {
			return nil, err
		}
		return peerconfig.OpenOffline(cmd.Context(), cfg, *dir, create)
	}
	var file string
	export := &cobra.Command{Use: "export", Short: "Write the pinset as JSON lines (streamed)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := open(cmd, false)
			if err != nil {
				return err
			}
			defer o.Close()
			var w io.Writer = cmd.OutOrStdout()
			if file != "" && file != "-" {
				f, err := os.Create(file)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			n, err := o.Export(cmd.Context(), w, progressFn("exported"))
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "\rexported %d pins\n", n)
			return nil
		}}
	export.Flags().StringVarP(&file, "file", "f", "", "write here instead of standard output")
	imp := &cobra.Command{Use: "import", Short: "Add the pins of an export to this (stopped) peer; they are announced at its next start", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := open(cmd, true)
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if file != "" && file != "-" {
				f, err := os.Open(file)
				if err != nil {
					o.Close()
					return err
				}
				defer f.Close()
				r = f
			}
			n, err := o.Import(cmd.Context(), r, progressFn("imported"))
			if cerr := o.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w (%d pins imported before it)", err, n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d pins; they reach the cluster when the peer starts\n", n)
			return nil
		}}
	imp.Flags().StringVarP(&file, "file", "f", "", "read this export instead of standard input")
	digest := &cobra.Command{Use: "digest", Short: "Print the pinset's digest (equal on converged peers)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := open(cmd, false)
			if err != nil {
				return err
			}
			defer o.Close()
			d, err := o.Digest(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d pins\n", d.Digest, d.Pins)
			return nil
		}}
	compact := &cobra.Command{Use: "compact", Short: "Start a new epoch of the pinset on this stopped writer: its store keeps the live pins, not their history", Args: cobra.NoArgs,
		Long: `Copies the live pinset into a new epoch and drops the old one's history
(docs/adr/0009-compaction.md). The peer must hold a write key. At its next
start it announces the new epoch, and the other peers switch to it.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			sk, err := peerconfig.LoadIdentity(*dir)
			if err != nil {
				return err
			}
			self, err := peer.IDFromPrivateKey(sk)
			if err != nil {
				return err
			}
			var seal func([]byte) []byte
			if wk, err := trust.LoadWriteKey(cfg.WriteKeyPath(*dir)); err == nil {
				seal = trust.NewSigner(wk, cfg.Cluster.Name, string(self)).SealEpoch
			}
			path := cfg.DatastorePath(*dir)
			before := units.DirSize(path)
			o, err := peerconfig.OpenOffline(cmd.Context(), cfg, *dir, false)
			if err != nil {
				return err
			}
			began := time.Now()
			rec, st, err := o.Compact(cmd.Context(), self, seal, time.Now())
			if cerr := o.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "epoch %d: %d pins copied (digest %s) in %s; the store went from %s to %s\n",
				rec.Epoch, st.Pins, st.Digest.Digest, time.Since(began).Round(time.Millisecond),
				units.Bytes(before), units.Bytes(units.DirSize(path)))
			return nil
		}}
	var force bool
	cleanup := &cobra.Command{Use: "cleanup", Short: "Delete this peer's pinset (it syncs again from the cluster at its next start)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := peerconfig.LoadConfig(*dir)
			if err != nil {
				return err
			}
			path := cfg.DatastorePath(*dir)
			// Opening proves the peer is stopped.
			o, err := peerconfig.OpenOffline(context.Background(), cfg, *dir, false)
			if err != nil {
				return err
			}
			d, _ := o.Digest(cmd.Context())
			o.Close()
			if !force {
				fmt.Fprintf(cmd.OutOrStdout(), "delete %s (%d pins)? type yes: ", path, d.Pins)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return fmt.Errorf("not confirmed: nothing deleted")
				}
			}
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", path)
			return nil
		}}
	cleanup.Flags().BoolVarP(&force, "force", "f", false, "do not ask")
	st.AddCommand(export, imp, digest, compact, cleanup)
	return st
}
