package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/leakcheck"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/probe/local"
	"github.com/boxproj/box/synth"
)

func newLeakcheck() *cobra.Command {
	var (
		o                              = leakcheck.Options{Log: io.Discard, NVML: local.NVML}
		rpcList, modes, jsonOut, junit string
		verbose                        bool
		tolerance                      = probe.NewSize("16MiB")
	)
	c := &cobra.Command{
		Use:   "leakcheck (--model FILE | --demo) [--rpc host:port,... | --workers K] [flags]",
		Short: "Restart heads over workers in four ways and fail when memory is not given back",
		Long: "Restarts a head over workers --restarts times, ending it by each of --modes in turn (graceful: SIGTERM,\n" +
			"kill: SIGKILL, kill-during-load, vanish: a cut network link), and checks that the workers give every\n" +
			"byte back after each restart. Exit status: 0 no leak, 1 a leak, foreign memory or a failed cycle, 2 could not run.",
		Example: "  box leakcheck --demo --restarts 10\n" +
			"  box leakcheck --model m.gguf --rpc 10.0.0.5:50052,10.0.0.6:50052 --modes graceful,kill --json r.json --junit r.xml",
		Args: noArgs,
	}
	f := c.Flags()
	f.IntVar(&o.Restarts, "restarts", 10, "head restarts (cycles)")
	f.StringVar(&o.Model, "model", "", "GGUF model `FILE` to serve")
	f.BoolVar(&o.Demo, "demo", false, "serve the built-in tiny synthetic model (kill-during-load uses a larger synthetic one)")
	f.StringVar(&o.CacheDir, "cache-dir", synth.DefaultCacheDir(), "where synthetic models are kept")
	f.StringVar(&rpcList, "rpc", "", "existing workers: host:port[@adminhost:port],... (admin API defaults to port+1)")
	f.IntVar(&o.Workers, "workers", 2, "without --rpc: local box workers to start")
	f.StringVar(&modes, "modes", "graceful,kill,kill-during-load,vanish", "how heads end, cycled over the restarts")
	f.IntVar(&o.Requests, "requests", 2, "chat requests per cycle")
	f.DurationVar(&o.ReleaseTimeout, "release-timeout", 30*time.Second, "how long the workers may take to give memory back")
	f.Var(tolerance, "tolerance", "memory that may stay above the first baseline")
	f.StringVar(&jsonOut, "json", "", "write the report as JSON (leakcheck/SCHEMA.md) to `FILE`")
	f.StringVar(&junit, "junit", "", "write JUnit XML (one testcase per cycle) to `FILE`")
	f.BoolVar(&o.JudgeRSS, "judge-rss", false, "let local workers' RSS decide verdicts too (always reported; the C allocator may keep freed heap)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log progress to stderr")
	token := adminTokenFlags(f)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if o.Tolerance = tolerance.Bytes; rpcList != "" && f.Changed("workers") {
			return usagef("--rpc and --workers exclude each other")
		}
		if err := o.Validate(); err != nil {
			return usageError{err}
		}
		var err error
		if rpcList != "" {
			if o.RPC, err = api.ParseEndpoints(rpcList); err != nil {
				return usageError{err}
			}
			// Workers started elsewhere have their own token; local ones
			// get one from leakcheck.
			if o.AdminToken, err = token(); err != nil {
				return err
			}
		}
		if o.Modes, err = leakcheck.ParseModes(modes); err != nil {
			return usagef("--modes: %v", err)
		}
		if verbose {
			o.Log = c.ErrOrStderr()
		}
		rep, err := leakcheck.Run(c.Context(), o)
		if errors.As(err, new(*leakcheck.SetupError)) {
			return cannotRun{fmt.Errorf("could not run: %w", err)}
		} else if err != nil {
			return err
		}
		if err := rep.WriteTable(c.OutOrStdout()); err != nil {
			return err
		}
		if err := rep.WriteFiles(jsonOut, junit); err != nil {
			return cannotRun{err}
		}
		if c.Context().Err() != nil {
			return cannotRun{errors.New("interrupted")}
		}
		return rep.Err() // exit 1 on LEAK, FOREIGN or FAIL
	}
	return c
}
