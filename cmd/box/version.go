package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/buildinfo"
)

// version and commit are set by make build: -ldflags "-X main.version=$(git
// describe --always --dirty) -X main.commit=$(git rev-parse HEAD)".
var version, commit = "dev", ""

func newVersion() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "version",
		Short:   "Print box's version, commit, Go, llama.cpp and RPC protocol versions",
		Example: "  box version\n  box version --json | jq -r .commit\n  boxtop --version",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v := any(buildinfo.Read(version, commit))
			if asJSON {
				b, _ := json.MarshalIndent(v, "", "  ")
				v = string(b) + "\n"
			}
			_, err := fmt.Fprint(c.OutOrStdout(), v)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the same as JSON")
	return c
}
