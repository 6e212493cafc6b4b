package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/boxproj/box/bench"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
)

// benchReport is what --out holds.
type benchReport struct {
	Time         time.Time        `json:"time"`
	CPU          string           `json:"cpu"`
	CPUs         int              `json:"cpus"`
	SystemInfo   string           `json:"system_info"`
	BandwidthBps float64          `json:"read_bandwidth_bytes_per_s"`
	Results      []bench.Result   `json:"results"`
	RPC          *bench.RPCResult `json:"rpc,omitempty"`
	Cluster      *clusterBench    `json:"cluster,omitempty"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		preset   = fs.String("preset", "1b", "synthetic model preset")
		types    = fs.String("types", "q8_0,f16", "weight types to measure, comma-separated")
		cacheDir = fs.String("cache-dir", defaultCacheDir(), "where the synthetic models are kept")
		reps     = fs.Int("reps", 5, "repetitions per test")
		pp       = fs.Int("pp", 512, "prompt tokens for the pp test")
		tg       = fs.Int("tg", 128, "generated tokens for the tg test")
		threads  = fs.Int("threads", runtime.NumCPU(), "CPU threads")
		bwSize   = fs.Int("bw-mib", 1024, "MiB read by the bandwidth test")
		sinkSize = fs.Int("sink", 0, "")
		suites   = fs.String("suite", "cpu,rpc,cluster", "what to measure: cpu (pp/tg per type), rpc (worker transport), cluster (head + 2 workers)")
		out      = fs.String("out", "", "write the results as JSON to this file")
		logLevel = fs.String("log-level", "warn", "debug, info, warn or error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sinkSize > 0 {
		// Internal: the raw loopback peer of the rpc suite, in its own process.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, ln.Addr().String())
		go bench.Sink(ln, *sinkSize)
		<-ctx.Done()
		ln.Close()
		return nil
	}
	if *reps < 1 || *pp < 1 || *tg < 1 || *threads < 1 || *bwSize < 64 {
		fmt.Fprintln(stderr, "box bench: --reps, --pp, --tg, --threads must be positive and --bw-mib at least 64")
		return errUsage
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	llama.Init(log)

	rep := benchReport{Time: time.Now().UTC(), CPU: cpuModel(), CPUs: runtime.NumCPU(), SystemInfo: llama.SystemInfo()}
	fmt.Fprintf(stdout, "cpu: %s (%d CPUs)\nllama.cpp: %s\n", rep.CPU, rep.CPUs, rep.SystemInfo)

	rep.BandwidthBps, err = bench.ReadBandwidth(ctx, *bwSize<<20, 5)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "memory read bandwidth: %.1f GB/s (best of 5, %d MiB, all CPUs)\n\n", rep.BandwidthBps/1e9, *bwSize)

	want := map[string]bool{}
	for _, s := range strings.Split(*suites, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["cpu"] {
		if err := benchCPU(ctx, stdout, &rep, *preset, *types, *cacheDir, *pp, *tg, *reps, *threads); err != nil {
			return err
		}
	}
	if want["rpc"] {
		if err := benchRPC(ctx, stdout, &rep); err != nil {
			return fmt.Errorf("rpc bench: %w", err)
		}
	}
	if want["cluster"] {
		if err := benchCluster(ctx, stdout, &rep, *preset, *cacheDir, *pp, *tg, *reps, *threads); err != nil {
			return fmt.Errorf("cluster bench: %w", err)
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", *out)
	}
	return nil
}

func benchCPU(ctx context.Context, stdout io.Writer, rep *benchReport, preset, types, cacheDir string, pp, tg, reps, threads int) error {
	fmt.Fprintf(stdout, "| %-22s | %9s | %7s | %-7s | %7s | %6s | %16s | %-13s |\n", "model", "size", "params", "backend", "threads", "test", "t/s", "bound ratio")
	fmt.Fprintf(stdout, "|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 24), strings.Repeat("-", 11), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 8), strings.Repeat("-", 18), strings.Repeat("-", 15))
	for _, typ := range strings.Split(types, ",") {
		cfg, err := synth.Preset(preset)
		if err != nil {
			return err
		}
		cfg.Type = strings.TrimSpace(typ)
		path, err := synth.EnsureCached(ctx, cacheDir, cfg)
		if err != nil {
			return fmt.Errorf("model %s/%s: %w", preset, typ, err)
		}
		rows, err := benchModel(ctx, path, cfg.Type, pp, tg, reps, threads, rep.BandwidthBps)
		if err != nil {
			return err
		}
		for _, r := range rows {
			ratio := ""
			if r.BoundTPS > 0 {
				ratio = fmt.Sprintf("%.2f of %.1f", r.Ratio, r.BoundTPS)
			}
			fmt.Fprintf(stdout, "| %-22s | %6.0f MB | %6.0fM | %-7s | %7d | %6s | %7.2f ± %6.2f | %-13s |\n",
				r.Model, float64(r.SizeBytes)/1e6, float64(r.Params)/1e6, r.Backend, r.Threads, r.Test, r.Mean, r.Stddev, ratio)
		}
		rep.Results = append(rep.Results, rows...)
	}
	return nil
}

func benchModel(ctx context.Context, path, typ string, pp, tg, reps, threads int, bw float64) ([]bench.Result, error) {
	m, err := llama.LoadModel(ctx, path, llama.ModelParams{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	c, err := m.NewContext(llama.ContextParams{NCtx: max(pp, tg) + 16, NBatch: pp, Threads: threads})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	base := bench.Result{Model: m.Desc(), Type: typ, SizeBytes: m.Size(), Params: m.Params(), Backend: "CPU", Threads: threads}

	ppS, err := bench.Prompt(ctx, c, pp, reps)
	if err != nil {
		return nil, fmt.Errorf("pp%d: %w", pp, err)
	}
	tgS, err := bench.Generate(ctx, c, tg, reps)
	if err != nil {
		return nil, fmt.Errorf("tg%d: %w", tg, err)
	}
	r1, r2 := base, base
	r1.Test, r1.Samples = fmt.Sprintf("pp%d", pp), ppS
	r1.Mean, r1.Stddev = bench.MeanStd(ppS)
	r2.Test, r2.Samples = fmt.Sprintf("tg%d", tg), tgS
	r2.Mean, r2.Stddev = bench.MeanStd(tgS)
	r2.BoundTPS = bw / float64(m.Size())
	r2.Ratio = r2.Mean / r2.BoundTPS
	return []bench.Result{r1, r2}, nil
}

// cpuModel reads the CPU's name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
