package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/serve"
	"github.com/boxproj/box/synth"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		model    = fs.String("model", "", "GGUF model file to serve")
		demo     = fs.Bool("demo", false, "serve the built-in tiny synthetic model (written to --cache-dir on first use)")
		cacheDir = fs.String("cache-dir", defaultCacheDir(), "where --demo keeps its model")
		listen   = fs.String("listen", "127.0.0.1:8080", "HTTP address")
		id       = fs.String("model-id", "", "model name clients use (default: file name without .gguf)")
		parallel = fs.Int("parallel", 1, "requests generated at once (one context each)")
		queue    = fs.Int("queue", 0, "requests that may wait for a slot before 429 (default 4 x parallel)")
		nctx     = fs.Int("ctx-size", 0, "context tokens per slot (default min(2048, model's))")
		batch    = fs.Int("batch", 512, "prompt tokens per decode call")
		threads  = fs.Int("threads", 0, "CPU threads (default: all)")
		grace    = fs.Duration("grace", 10*time.Second, "how long in-flight requests may finish after SIGTERM")
		noMmap   = fs.Bool("no-mmap", false, "read the model instead of mapping it")
		logLevel = fs.String("log-level", "info", "debug, info, warn or error")
		rpcList  = fs.String("rpc", "", "workers to spread the model over: host:port[@adminhost:port],... (admin API defaults to port+1)")
		split    = fs.String("tensor-split", "", "shares per worker, then the local CPU unless --no-local, e.g. 1,3 (default: by free memory)")
		noLocal  = fs.Bool("no-local", false, "put every layer on the workers (the head keeps only the input embeddings)")
		reconn   = fs.Bool("reconnect", false, "when a lost worker answers again, reload the model")
		hb       = fs.Duration("heartbeat", 5*time.Second, "check workers' liveness this often; one silent this long is failed")
		rpcTO    = fs.Duration("rpc-timeout", 0, "one fixed deadline for every worker command (default: derived from the work)")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *model == "" && !*demo:
		fmt.Fprintln(stderr, "box serve: give --model FILE or --demo")
		return errUsage
	case *model != "" && *demo:
		fmt.Fprintln(stderr, "box serve: --model and --demo exclude each other")
		return errUsage
	case *parallel < 1 || *parallel > 64:
		fmt.Fprintln(stderr, "box serve: --parallel must be between 1 and 64")
		return errUsage
	case *queue < 0 || *nctx < 0 || *batch < 1 || *threads < 0:
		fmt.Fprintln(stderr, "box serve: --queue, --ctx-size and --threads must not be negative, --batch must be positive")
		return errUsage
	}
	var workers []cluster.Endpoint
	var shares []float64
	if *rpcList != "" {
		var err error
		if workers, err = cluster.ParseEndpoints(*rpcList); err != nil {
			fmt.Fprintln(stderr, "box serve:", err)
			return errUsage
		}
	} else if *split != "" || *noLocal || *reconn || *rpcTO != 0 {
		fmt.Fprintln(stderr, "box serve: --tensor-split, --no-local, --reconnect and --rpc-timeout need --rpc")
		return errUsage
	}
	if *split != "" {
		for _, f := range strings.Split(*split, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v < 0 {
				fmt.Fprintf(stderr, "box serve: --tensor-split %q: want non-negative numbers like 1,3\n", *split)
				return errUsage
			}
			shares = append(shares, v)
		}
	}
	if *hb <= 0 || *rpcTO < 0 {
		fmt.Fprintln(stderr, "box serve: --heartbeat must be positive, --rpc-timeout not negative")
		return errUsage
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "box serve:", err)
		return errUsage
	}
	llama.Init(log)

	path := *model
	if *demo {
		// The tiny preset with a vocabulary of word pieces, so the (random)
		// answers read as gibberish words rather than stray bytes.
		cfg, _ := synth.Preset("tiny")
		cfg.Vocab, cfg.Name = 4096, "synth-demo"
		path, err = synth.EnsureCached(ctx, *cacheDir, cfg)
		if err != nil {
			return fmt.Errorf("demo model: %w", err)
		}
		if *id == "" {
			*id = "box-demo"
		}
	}
	// A bad file is refused here, in one line, before anything starts.
	if err := checkModel(path); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := serve.New(serve.Config{
		ModelPath: path, ModelID: *id, Parallel: *parallel, Queue: *queue, CtxSize: *nctx,
		Batch: *batch, Threads: *threads, Grace: *grace, Model: llama.ModelParams{NoMmap: *noMmap},
		Workers: workers, Split: shares, NoLocal: *noLocal, Reconnect: *reconn, Heartbeat: *hb, RPCTimeout: *rpcTO,
		Probe: func(ctx context.Context) any { return probe.Local(ctx) },
	}, log)
	err = srv.Run(ctx, ln)
	return err
}

// checkModel validates a GGUF file's structure (header, metadata, tensor
// descriptions, data bounds) without loading it.
func checkModel(path string) error {
	_, err := gguf.Inspect(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("model %s: no such file", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("model %s: permission denied", path)
	default:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("model %s: %v", path, err)
	}
}

// defaultCacheDir is $XDG_CACHE_HOME/box (or ~/.cache/box).
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "box")
	}
	return filepath.Join(os.TempDir(), "box-cache")
}
