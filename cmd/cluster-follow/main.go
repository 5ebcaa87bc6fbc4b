// Command cluster-follow will run followers: a home user joins one or
// several clusters from read keys (tickets), donates disk and pins what is
// allocated, without ever writing the pinset. It arrives with the trust
// model (read and write keys); until then it only says so.
package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/pinring/pinring/internal/cli"
)

func main() {
	cli.Main(&cobra.Command{
		Use:   "cluster-follow",
		Short: "Follow Pinring clusters from read keys (not available yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("followers are not implemented yet: they need read keys (tickets), which come with the trust model")
		},
	})
}
