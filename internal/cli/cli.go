// Package cli holds what the three binaries share: running a cobra command
// so that any failure prints one readable line and exits non-zero, and
// logging set-up.
package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	logging "github.com/ipfs/go-log/v2"
	"github.com/spf13/cobra"
)

// Main runs root and exits: 0 on success, 1 on error (2 for usage errors),
// printing "<name>: <error>" on one line.
func Main(root *cobra.Command) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &UsageError{err}
	})
	if err := root.Execute(); err != nil {
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintf(os.Stderr, "%s: %s\n", root.Name(), msg)
		var ue *UsageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") ||
			strings.Contains(err.Error(), "arg(s)") {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// UsageError marks a command-line mistake (exit code 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// SetupLogging sets go-log's level from --debug or GOLOG_LOG_LEVEL.
func SetupLogging(debug bool) {
	if debug {
		logging.SetAllLoggers(logging.LevelDebug)
		return
	}
	if os.Getenv("GOLOG_LOG_LEVEL") == "" {
		logging.SetAllLoggers(logging.LevelWarn)
		for _, l := range []string{"peer", "pintracker", "crdtstate", "restapi"} {
			logging.SetLogLevel(l, "info")
		}
	}
}

// Dir is the directory named by the environment variable env, or name in
// the user's home directory (name itself when there is no home).
func Dir(env, name string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return name
	}
	return filepath.Join(home, name)
}

// IsTerminal reports whether f is a terminal (for progress output).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
