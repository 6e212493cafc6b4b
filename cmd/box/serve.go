package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/probe/local"
	"github.com/boxproj/box/serve"
	"github.com/boxproj/box/synth"
)

func newServe() *cobra.Command {
	var (
		cfg                                    = serve.Config{Probe: func(ctx context.Context) any { return local.Report(ctx) }}
		cacheDir, listen, logLevel, rpc, split string
		demo                                   bool
	)
	c := &cobra.Command{
		Use:   "serve (--model FILE | --demo) [flags]",
		Short: "Serve a GGUF model over an OpenAI-compatible HTTP API, alone or over workers",
		Long: "Serves a GGUF model with the embedded llama.cpp: POST /v1/chat/completions, /v1/completions, GET /v1/models,\n" +
			"/health, /metrics and /v1/cluster. --rpc spreads the layers over box workers (or llama.cpp rpc-servers),\n" +
			"loading all-or-nothing.",
		Example: "  box serve --demo\n  box serve --model model.gguf --listen 0.0.0.0:8080 --parallel 4\n" +
			"  box serve --model model.gguf --rpc 10.0.0.5:50052,10.0.0.6:50052 --tensor-split 1,3 --no-local --reconnect",
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&cfg.ModelPath, "model", "", "GGUF model `FILE` to serve")
	f.BoolVar(&demo, "demo", false, "serve the built-in tiny synthetic model (written to --cache-dir on first use)")
	f.StringVar(&cacheDir, "cache-dir", synth.DefaultCacheDir(), "where --demo keeps its model, and fnv-memo: the hashes of uploads, for warm worker caches")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP address")
	f.StringVar(&cfg.ModelID, "model-id", "", "model name clients use (default: file name without .gguf)")
	f.IntVar(&cfg.Parallel, "parallel", 1, "requests generated at once (one context each)")
	f.IntVar(&cfg.Queue, "queue", 0, "requests that may wait for a slot before 429 (default 4 x parallel)")
	f.IntVar(&cfg.CtxSize, "ctx-size", 0, "context tokens per slot (default min(2048, model's))")
	f.IntVar(&cfg.Batch, "batch", 512, "prompt tokens per decode call")
	f.IntVar(&cfg.Threads, "threads", 0, "CPU threads (default: all)")
	f.DurationVar(&cfg.Grace, "grace", 10*time.Second, "how long in-flight requests may finish after SIGTERM")
	f.BoolVar(&cfg.Model.NoMmap, "no-mmap", false, "read the model instead of mapping it")
	f.BoolVar(&cfg.Model.NoHugePages, "no-huge-pages", false, "keep the host weights on the pages they loaded on (default: moved onto transparent huge pages in the background)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&rpc, "rpc", "", "workers to spread the model over: host:port[@adminhost:port],... (admin API defaults to port+1)")
	f.StringVar(&split, "tensor-split", "", "shares per worker, then the local CPU unless --no-local, e.g. 1,3 (default: by free memory)")
	f.BoolVar(&cfg.NoLocal, "no-local", false, "put every layer on the workers (the head keeps only the input embeddings)")
	f.BoolVar(&cfg.Reconnect, "reconnect", false, "when a lost worker answers again, reload the model")
	f.DurationVar(&cfg.Heartbeat, "heartbeat", 5*time.Second, "check workers' liveness this often; one silent this long is failed")
	f.DurationVar(&cfg.RPCTimeout, "rpc-timeout", 0, "one fixed deadline for every worker command (default: derived from the work)")
	var apiKey, keyFile string
	f.StringVar(&apiKey, "api-key", "", "require this `KEY` (Authorization: Bearer KEY) on every endpoint but /health and /metrics")
	f.StringVar(&keyFile, "api-key-file", "", "`FILE` of API keys, one a line (# starts a comment)")
	f.BoolVar(&cfg.AuthAll, "auth-all", false, "require the API key on /health and /metrics too")
	c.RunE = func(c *cobra.Command, _ []string) error {
		switch {
		case cfg.ModelPath == "" && !demo:
			return usagef("give --model FILE or --demo")
		case cfg.ModelPath != "" && demo:
			return usagef("--model and --demo exclude each other")
		case rpc == "" && (split != "" || cfg.NoLocal || cfg.Reconnect || cfg.RPCTimeout != 0):
			return usagef("--tensor-split, --no-local, --reconnect and --rpc-timeout need --rpc")
		}
		var err error
		if cfg.APIKeys, err = serve.APIKeys(apiKey, keyFile); err != nil {
			return usageError{err}
		}
		if rpc != "" {
			if cfg.Workers, err = api.ParseEndpoints(rpc); err != nil {
				return usageError{err}
			}
		}
		if cfg.Split, err = cluster.ParseSplit(split); err != nil {
			return usageError{err}
		}
		if err := cfg.Validate(); err != nil {
			return usageError{err}
		}
		log, err := newLogger(c.ErrOrStderr(), logLevel)
		if err != nil {
			return err
		}
		llama.Init(log)
		cfg.HashMemo = filepath.Join(cacheDir, "fnv-memo")
		// A bad file is refused here, in one line, before anything starts.
		if err := cfg.ResolveModel(c.Context(), demo, cacheDir); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		return serve.New(cfg, log).Run(c.Context(), ln)
	}
	return c
}
