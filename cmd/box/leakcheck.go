package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/leakcheck"
)

// runLeakcheck restarts a head over workers and checks that the workers
// give all memory back. Exit codes: 0 pass, 1 leak (or a failed cycle), 2
// could not run.
func runLeakcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box leakcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		restarts  = fs.Int("restarts", 10, "head restarts (cycles)")
		model     = fs.String("model", "", "GGUF model to serve")
		demo      = fs.Bool("demo", false, "serve the built-in tiny synthetic model (kill-during-load uses a larger synthetic one)")
		cacheDir  = fs.String("cache-dir", defaultCacheDir(), "where synthetic models are kept")
		rpcList   = fs.String("rpc", "", "existing workers: host:port[@adminhost:port],... (admin API defaults to port+1)")
		workers   = fs.Int("workers", 2, "without --rpc: local box workers to start")
		modes     = fs.String("modes", "graceful,kill,kill-during-load,vanish", "how heads end, cycled over the restarts")
		requests  = fs.Int("requests", 2, "chat requests per cycle")
		release   = fs.Duration("release-timeout", 30*time.Second, "how long the workers may take to give memory back")
		tolerance = fs.String("tolerance", "16MiB", "memory that may stay above the first baseline")
		jsonOut   = fs.String("json", "", "write the report as JSON (leakcheck/SCHEMA.md) to FILE")
		junitOut  = fs.String("junit", "", "write JUnit XML (one testcase per cycle) to FILE")
		judgeRSS  = fs.Bool("judge-rss", false, "let local workers' RSS decide verdicts too (always reported; the C allocator may keep freed heap)")
		verbose   = fs.Bool("v", false, "log progress to stderr")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: box leakcheck [--model FILE | --demo] [--rpc host:port,... | --workers K] [flags]

Restarts a head over workers --restarts times, ending it by each of --modes in
turn, and checks that the workers give every byte back after each restart.
Exit status: 0 no leak, 1 a leak or a failed cycle, 2 could not run.

`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "box leakcheck: "+format+"\n", a...)
		return errUsage
	}
	o := leakcheck.Options{Restarts: *restarts, Model: *model, Demo: *demo, CacheDir: *cacheDir, Workers: *workers,
		Requests: *requests, ReleaseTimeout: *release, JudgeRSS: *judgeRSS, Log: io.Discard}
	if *verbose {
		o.Log = stderr
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *model == "" && !*demo:
		return bad("give --model FILE or --demo")
	case *model != "" && *demo:
		return bad("--model and --demo exclude each other")
	case *restarts < 1:
		return bad("--restarts must be at least 1")
	case *workers < 1:
		return bad("--workers must be at least 1")
	case *requests < 0:
		return bad("--requests must not be negative")
	case *release <= 0:
		return bad("--release-timeout must be positive")
	case *rpcList != "" && set["workers"]:
		return bad("--rpc and --workers exclude each other")
	}
	var err error
	if *rpcList != "" {
		if o.RPC, err = cluster.ParseEndpoints(*rpcList); err != nil {
			return bad("%v", err)
		}
	}
	if o.Modes, err = leakcheck.ParseModes(*modes); err != nil {
		return bad("--modes: %v", err)
	}
	tol, err := parseSize(*tolerance)
	if err != nil || tol == 0 {
		return bad("--tolerance %q: want a positive size like 16MiB", *tolerance)
	}
	o.Tolerance = tol

	rep, err := leakcheck.Run(ctx, o)
	if err != nil {
		var se *leakcheck.SetupError
		if errors.As(err, &se) {
			return bad("could not run: %v", err)
		}
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	write := func(path string, f func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	if err := write(*jsonOut, rep.WriteJSON); err != nil {
		return bad("--json: %v", err)
	}
	if err := write(*junitOut, rep.WriteJUnit); err != nil {
		return bad("--junit: %v", err)
	}
	if ctx.Err() != nil {
		return bad("interrupted")
	}
	if rep.Verdict != leakcheck.VerdictPass {
		return errors.New(rep.Summary) // exit 1; the summary starts with LEAK or FAIL
	}
	return nil
}
