package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/probe/local"
)

func newProbe() *cobra.Command {
	var (
		rpcs, admins string
		asJSON       bool
		timeout      time.Duration
	)
	c := &cobra.Command{
		Use:   "probe [--admin URL,...] [--rpc host:port,...] [--json]",
		Short: "Report the memory of every device of every node, once",
		Long: "Reports every device of every node: total, used by box, used by others, free, protocol and status.\n" +
			"With no --rpc or --admin it reports this host (ggml devices, RAM, cgroup, NVML).\n" +
			"Exits 0 when every node answered, 1 otherwise.",
		Example: "  box probe\n  box probe --admin w1=10.0.0.5:50053,w2=10.0.0.6:50053\n  box probe --rpc 10.0.0.6:50052 --json",
		Args:    noArgs,
	}
	f := c.Flags()
	f.StringVar(&rpcs, "rpc", "", "ggml RPC endpoints [name=]host:port,... (box workers or llama.cpp rpc-server), probed through the protocol")
	f.StringVar(&admins, "admin", "", "box worker admin URLs [name=]URL,... (http://host:port; bare host:port works)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON (schema: probe/SCHEMA.md)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long each node may take to answer")
	token := adminTokenFlags(f)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		tok, err := token()
		if err != nil {
			return err
		}
		t := probe.Targets{Admin: splitList(admins), RPC: splitList(rpcs), Token: tok}
		var rep probe.Report
		if len(t.Admin)+len(t.RPC) == 0 {
			rep = local.Report(c.Context())
		} else {
			rep = probe.Remote(c.Context(), t, timeout)
		}
		if err := probe.Write(c.OutOrStdout(), rep, asJSON); err != nil {
			return err
		}
		return rep.Err()
	}
	return c
}
