package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
)

// Options are what box bench measures and how.
type Options struct {
	Preset   string   // synthetic model preset (synth.Preset)
	Types    []string // weight types of the cpu suite
	CacheDir string   // where the synthetic models are kept
	Reps     int      // repetitions per test
	PP, TG   int      // prompt tokens of the pp test, generated tokens of the tg test
	Threads  int      // CPU threads
	BWMiB    int      // MiB read by the bandwidth test
	Suites   []string // cpu (pp/tg per type), rpc (worker transport), cluster (head + 2 workers), load (time to a loaded model over 2 workers vs raw TCP)
	Out      string   // write the report as JSON to this file ("" = do not)
	// Exe is the box binary that runs the rpc and cluster suites' workers
	// and sink (`box worker`, `box bench --sink`); "" means this executable.
	Exe string
}

// Report is what Options.Out holds.
type Report struct {
	Time         time.Time     `json:"time"`
	CPU          string        `json:"cpu"`
	CPUs         int           `json:"cpus"`
	SystemInfo   string        `json:"system_info"`
	BandwidthBps float64       `json:"read_bandwidth_bytes_per_s"`
	Results      []Result      `json:"results"`
	RPC          *RPCResult    `json:"rpc,omitempty"`
	Cluster      *ClusterBench `json:"cluster,omitempty"`
	Load         *LoadBench    `json:"load,omitempty"`
	// Summary is every suite's headline, as printed last.
	Summary []SummaryRow `json:"summary"`
}

// Validate reports options that cannot run.
func (o Options) Validate() error {
	if o.Reps < 1 || o.PP < 1 || o.TG < 1 || o.Threads < 1 || o.BWMiB < 64 {
		return fmt.Errorf("reps, pp, tg and threads must be positive and bw-mib at least 64")
	}
	for _, s := range o.Suites {
		if s != "cpu" && s != "rpc" && s != "cluster" && s != "load" {
			return fmt.Errorf("unknown suite %q (want cpu, rpc, cluster or load)", s)
		}
	}
	return nil
}

// Run measures the machine's read bandwidth, then each suite of o, printing
// tables to stdout as it goes, and writes the JSON report to o.Out. The
// caller has called llama.Init.
func Run(ctx context.Context, o Options, stdout io.Writer) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Exe = exe
	}
	rep := &Report{Time: time.Now().UTC(), CPU: cpuModel(), CPUs: runtime.NumCPU(), SystemInfo: llama.SystemInfo()}
	fmt.Fprintf(stdout, "cpu: %s (%d CPUs)\nllama.cpp: %s\n", rep.CPU, rep.CPUs, rep.SystemInfo)
	var err error
	rep.BandwidthBps, err = ReadBandwidth(ctx, o.BWMiB<<20, 5)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "memory read bandwidth: %.1f GB/s (best of 5, %d MiB, all CPUs)\n\n", rep.BandwidthBps/1e9, o.BWMiB)
	for _, s := range o.Suites {
		switch s {
		case "cpu":
			err = benchCPU(ctx, stdout, rep, o)
		case "rpc":
			err = benchRPC(ctx, stdout, rep, o)
		case "cluster":
			err = benchCluster(ctx, stdout, rep, o)
		case "load":
			err = benchLoad(ctx, stdout, rep, o)
		}
		if err != nil {
			return nil, fmt.Errorf("%s bench: %w", s, err)
		}
	}
	rep.Summary = Summarize(rep)
	printSummary(stdout, rep.Summary)
	if o.Out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.Out, append(b, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", o.Out, err)
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", o.Out)
	}
	return rep, nil
}

// RunSink is `box bench --sink N`: the raw loopback peer of the rpc suite,
// in its own process. It prints its address and serves until ctx ends.
func RunSink(ctx context.Context, n int, fresh bool, stdout io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, ln.Addr().String())
	go Sink(ln, n, fresh)
	<-ctx.Done()
	return ln.Close()
}

// presetModel is the path of o's preset in weight type typ, written into
// the cache dir the first time.
func presetModel(ctx context.Context, o Options, typ string) (string, error) {
	cfg, err := synth.Preset(o.Preset)
	if err != nil {
		return "", err
	}
	cfg.Type = typ
	path, err := synth.EnsureCached(ctx, o.CacheDir, cfg)
	if err != nil {
		return "", fmt.Errorf("model %s/%s: %w", o.Preset, typ, err)
	}
	return path, nil
}

func benchCPU(ctx context.Context, stdout io.Writer, rep *Report, o Options) error {
	fmt.Fprintf(stdout, "| %-22s | %9s | %7s | %-7s | %7s | %6s | %16s | %-13s |\n", "model", "size", "params", "backend", "threads", "test", "t/s", "bound ratio")
	fmt.Fprintf(stdout, "|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 24), strings.Repeat("-", 11), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 8), strings.Repeat("-", 18), strings.Repeat("-", 15))
	for _, typ := range o.Types {
		typ = strings.TrimSpace(typ)
		path, err := presetModel(ctx, o, typ)
		if err != nil {
			return err
		}
		rows, err := benchModel(ctx, path, typ, o, rep.BandwidthBps)
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
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Test, "tg") {
			fmt.Fprintf(stdout, "%s: %d MiB of the weights on huge pages\n", r.Model, r.HugePageBytes>>20)
		}
	}
	return nil
}

func benchModel(ctx context.Context, path, typ string, o Options, bw float64) ([]Result, error) {
	pp, tg, reps, threads := o.PP, o.TG, o.Reps, o.Threads
	m, err := llama.LoadModel(ctx, path, llama.ModelParams{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	// Measure the steady state: the weights as box serves them, once the
	// load's background move onto huge pages is over.
	hp := m.WaitHugePages(ctx)
	c, err := m.NewContext(llama.ContextParams{NCtx: max(pp, tg) + 16, NBatch: pp, Threads: threads})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	base := Result{Model: m.Desc(), Type: typ, SizeBytes: m.Size(), Params: m.Params(), Backend: "CPU", Threads: threads, HugePageBytes: hp.Bytes}

	ppS, err := Prompt(ctx, c, pp, reps)
	if err != nil {
		return nil, fmt.Errorf("pp%d: %w", pp, err)
	}
	tgS, err := Generate(ctx, c, tg, reps)
	if err != nil {
		return nil, fmt.Errorf("tg%d: %w", tg, err)
	}
	r1, r2 := base, base
	r1.Test, r1.Samples = fmt.Sprintf("pp%d", pp), ppS
	r1.Mean, r1.Stddev = MeanStd(ppS)
	r2.Test, r2.Samples = fmt.Sprintf("tg%d", tg), tgS
	r2.Mean, r2.Stddev = MeanStd(tgS)
	r2.BoundTPS = bw / float64(m.Size())
	r2.Ratio = r2.Mean / r2.BoundTPS
	return []Result{r1, r2}, nil
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
