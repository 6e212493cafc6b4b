package main

import (
	"runtime"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/bench"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
)

func newBench() *cobra.Command {
	var (
		o                 bench.Options
		types, suites, lv string
		sink              int
		sinkFresh         bool
	)
	c := &cobra.Command{
		Use:   "bench [flags]",
		Short: "Measure llama-bench-style throughput against the machine's memory bandwidth",
		Long: "Measures the memory read bandwidth, then pp and tg (tokens/s, mean ± stddev) of synthetic models on the\n" +
			"CPU, the RPC transport of a loopback worker, and a head with two loopback workers (see docs/benchmarks.md).",
		Example: "  box bench --out bench.json\n  box bench --suite cpu --types q8_0 --reps 3",
		Args:    noArgs,
	}
	f := c.Flags()
	f.StringVar(&o.Preset, "preset", "1b", "synthetic model preset")
	f.StringVar(&types, "types", "q8_0,f16", "weight types to measure, comma-separated")
	f.StringVar(&o.CacheDir, "cache-dir", synth.DefaultCacheDir(), "where the synthetic models are kept")
	f.IntVar(&o.Reps, "reps", 5, "repetitions per test")
	f.IntVar(&o.PP, "pp", 512, "prompt tokens for the pp test")
	f.IntVar(&o.TG, "tg", 128, "generated tokens for the tg test")
	f.IntVar(&o.Threads, "threads", runtime.NumCPU(), "CPU threads")
	f.IntVar(&o.BWMiB, "bw-mib", 1024, "MiB read by the bandwidth test")
	f.StringVar(&suites, "suite", "cpu,rpc,cluster", "what to measure: cpu (pp/tg per type), rpc (worker transport), cluster (head + 2 workers), load (model load over 2 workers vs raw TCP; not in the default set)")
	f.StringVar(&o.Out, "out", "", "write the results as JSON to this `FILE`")
	f.StringVar(&lv, "log-level", "warn", "debug, info, warn or error")
	f.IntVar(&sink, "sink", 0, "internal: serve the rpc suite's raw loopback peer")
	f.MarkHidden("sink")
	f.BoolVar(&sinkFresh, "sink-fresh", false, "internal: the --sink peer receives every transfer into newly mapped memory")
	f.MarkHidden("sink-fresh")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if sink > 0 {
			return bench.RunSink(c.Context(), sink, sinkFresh, c.OutOrStdout())
		}
		o.Types, o.Suites = splitList(types), splitList(suites)
		if err := o.Validate(); err != nil {
			return usageError{err}
		}
		log, err := newLogger(c.ErrOrStderr(), lv)
		if err != nil {
			return err
		}
		llama.Init(log)
		_, err = bench.Run(c.Context(), o, c.OutOrStdout())
		return err
	}
	return c
}
