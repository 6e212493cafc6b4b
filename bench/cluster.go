package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/synth"
)

// benchWorker is a `box worker` subprocess for the benchmarks.
type benchWorker struct {
	addr string
	cmd  *exec.Cmd
}

func startBenchWorker(ctx context.Context, exe string, threads int, extra ...string) (*benchWorker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"worker", "--listen", addr, "--admin", "", "--threads", fmt.Sprint(threads), "--log-level", "warn"}, extra...)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := rpc.Dial(ctx, addr)
		if err == nil {
			c.Close()
			return &benchWorker{addr: addr, cmd: cmd}, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("worker %s did not start: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *benchWorker) stop() {
	w.cmd.Process.Signal(os.Interrupt)
	w.cmd.Wait()
}

// startSink runs `box bench --sink N` and reads the address it prints.
func startSink(ctx context.Context, exe string, n int, fresh bool) (*benchWorker, error) {
	args := []string{"bench", "--sink", fmt.Sprint(n)}
	if fresh {
		args = append(args, "--sink-fresh")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("sink: %w", err)
	}
	return &benchWorker{addr: strings.TrimSpace(line), cmd: cmd}, nil
}

func benchRPC(ctx context.Context, stdout io.Writer, rep *Report, o Options) error {
	w, err := startBenchWorker(ctx, o.Exe, 1)
	if err != nil {
		return err
	}
	defer w.stop()
	sink, err := startSink(ctx, o.Exe, 64<<20, false)
	if err != nil {
		return err
	}
	defer sink.stop()
	r, err := RPC(ctx, w.addr, sink.addr, w.cmd.Process.Pid, 64<<20, 25, 10000)
	if err != nil {
		return err
	}
	rep.RPC = &r
	fmt.Fprintf(stdout, "\nRPC transport (box worker on loopback, 64 MiB tensors, best of 25, interleaved):\n")
	fmt.Fprintf(stdout, "  raw loopback TCP      %8.0f MB/s   (one process to another)\n", r.LoopbackBps/1e6)
	fmt.Fprintf(stdout, "  raw loopback RTT      %8.1f µs     (1-byte ping-pong)\n", r.LoopbackRTTus)
	fmt.Fprintf(stdout, "  SET_TENSOR            %8.0f MB/s   %.2f of loopback\n", r.SetTensorBps/1e6, r.SetRatio)
	fmt.Fprintf(stdout, "  GET_TENSOR            %8.0f MB/s   %.2f of loopback\n", r.GetTensorBps/1e6, r.GetRatio)
	fmt.Fprintf(stdout, "  GRAPH_COMPUTE + GET   %8.1f µs per round trip (small graph)\n", r.GraphRTTus)
	fmt.Fprintf(stdout, "  worker RSS over %d alloc/set/free cycles: %.1f MiB -> %.1f MiB (%+.1f%%)\n",
		r.Cycles, float64(r.RSSStartBytes)/(1<<20), float64(r.RSSEndBytes)/(1<<20), r.RSSChangePercent)
	return nil
}

// ClusterBench compares one node with a head and two workers.
type ClusterBench struct {
	Model         string   `json:"model"`
	Single        []Result `json:"single_node"`
	Split         []Result `json:"head_plus_2_workers"`
	PPRatio       float64  `json:"pp_ratio"`
	TGRatio       float64  `json:"tg_ratio"`
	ColdLoadSec   float64  `json:"cold_load_seconds"`
	WarmLoadSec   float64  `json:"warm_load_seconds"`
	WarmSpeedup   float64  `json:"warm_speedup"`
	WorkerThreads int      `json:"worker_threads"`
	HeadThreads   int      `json:"head_threads"`
	// PerToken is where a generated token's time went over the two
	// workers, from the head's accounts of its commands.
	PerToken TokenTime `json:"tg_per_token"`
}

// TokenTime splits the time of one generated token, in microseconds.
type TokenTime struct {
	Total float64 `json:"total_us"`
	// Compute is from sending each graph to the answer that waited for it:
	// the workers decoding, building and computing it, and the round trip.
	Compute float64 `json:"compute_us"`
	// RoundTrips is the other commands: the tensor reads and writes that
	// carry activations and logits between the head and the workers.
	RoundTrips float64 `json:"round_trips_us"`
	// Serialize is the head turning ggml graphs into messages.
	Serialize float64 `json:"serialize_us"`
	// Head is the rest: llama.cpp's scheduling and the head's own compute
	// (the input embeddings).
	Head     float64 `json:"head_us"`
	Graphs   float64 `json:"graphs"` // per token, all workers
	Commands float64 `json:"commands"`
}

// tokenTime splits wall, the time of tokens decodes, using the nodes'
// command accounts over it.
func tokenTime(wall time.Duration, tokens int, stats []remote.CallStats) TokenTime {
	var s remote.CallStats
	var other time.Duration
	for _, x := range stats {
		s.Calls, s.Computes = s.Calls+x.Calls, s.Computes+x.Computes
		s.ComputeTime, s.Serialize = s.ComputeTime+x.ComputeTime, s.Serialize+x.Serialize
		other += x.OtherCallTime()
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(tokens) }
	t := TokenTime{Total: us(wall), Compute: us(s.ComputeTime), RoundTrips: us(other), Serialize: us(s.Serialize),
		Graphs: float64(s.Computes) / float64(tokens), Commands: float64(s.Calls) / float64(tokens)}
	t.Head = t.Total - t.Compute - t.RoundTrips - t.Serialize
	return t
}

func benchCluster(ctx context.Context, stdout io.Writer, rep *Report, o Options) error {
	pp, tg, reps, threads := o.PP, o.TG, o.Reps, o.Threads
	path, err := presetModel(ctx, o, synth.TypeQ8_0)
	if err != nil {
		return err
	}
	cb := &ClusterBench{Model: filepath.Base(path), WorkerThreads: threads, HeadThreads: 1}

	// (a) one node.
	single, err := benchModel(ctx, path, synth.TypeQ8_0, o, rep.BandwidthBps)
	if err != nil {
		return err
	}
	cb.Single = single

	// (b) a head holding no layers and two workers with an even split. The
	// three processes share the cores, but only one computes at a time (the
	// layers run in sequence), so each gets every thread.
	tmp, err := os.MkdirTemp("", "box-bench-cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var workers []*benchWorker
	defer func() {
		for _, w := range workers {
			w.stop()
		}
	}()
	var eps []cluster.Endpoint
	for i := 0; i < 2; i++ {
		w, err := startBenchWorker(ctx, o.Exe, threads, "--cache", filepath.Join(tmp, fmt.Sprint(i)))
		if err != nil {
			return err
		}
		workers = append(workers, w)
		eps = append(eps, cluster.Endpoint{Addr: w.addr})
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	load := func() (*llama.Model, *cluster.Cluster, time.Duration, error) {
		t0 := time.Now()
		cl, err := cluster.Connect(ctx, eps, quiet)
		if err != nil {
			return nil, nil, 0, err
		}
		// serve's sequence: the plan, then the load on it (all or nothing).
		o := cluster.LoadOptions{PlanOptions: cluster.PlanOptions{CtxSize: max(pp, tg) + 16, Parallel: 1, NoLocal: true, Split: []float64{1, 1}}}
		m, _, err := cluster.Load(ctx, cl, path, o, func(ctx context.Context, p llama.ModelParams) (*llama.Model, error) {
			return llama.LoadModel(ctx, path, p)
		})
		if err != nil {
			return nil, nil, 0, err
		}
		return m, cl, time.Since(t0), nil
	}
	// Cold: the workers' caches are empty. Warm: the same weights again,
	// sent as hashes (SET_TENSOR_HASH) and applied from the cache.
	m, cl, cold, err := load()
	if err != nil {
		return err
	}
	m.Close()
	cl.Close()
	remote.WaitHashing()
	m, cl, warm, err := load()
	if err != nil {
		return err
	}
	defer cl.Close()
	defer m.Close()
	cb.ColdLoadSec, cb.WarmLoadSec = cold.Seconds(), warm.Seconds()
	cb.WarmSpeedup = cold.Seconds() / warm.Seconds()

	// The head computes only the input embeddings; one thread there keeps
	// ggml's spinning thread pool off the cores the workers need.
	c, err := m.NewContext(llama.ContextParams{NCtx: max(pp, tg) + 16, NBatch: pp, Threads: 1})
	if err != nil {
		return err
	}
	defer c.Close()
	base := Result{Model: m.Desc() + " / 2 workers", Type: synth.TypeQ8_0, SizeBytes: m.Size(), Params: m.Params(), Backend: "RPC x2", Threads: threads}
	ppS, err := Prompt(ctx, c, pp, reps)
	if err != nil {
		return err
	}
	stats := func() []remote.CallStats {
		var out []remote.CallStats
		for _, n := range cl.Nodes() {
			out = append(out, n.Stats())
		}
		return out
	}
	before, t0 := stats(), time.Now()
	tgS, err := Generate(ctx, c, tg, reps)
	if err != nil {
		return err
	}
	wall, after := time.Since(t0), stats()
	for i := range after {
		after[i] = after[i].Sub(before[i])
	}
	cb.PerToken = tokenTime(wall, (reps+1)*tg, after) // Generate's warm-up round too
	if err := cl.Err(); err != nil {
		return err
	}
	r1, r2 := base, base
	r1.Test, r1.Samples = fmt.Sprintf("pp%d", pp), ppS
	r1.Mean, r1.Stddev = MeanStd(ppS)
	r2.Test, r2.Samples = fmt.Sprintf("tg%d", tg), tgS
	r2.Mean, r2.Stddev = MeanStd(tgS)
	cb.Split = []Result{r1, r2}
	cb.PPRatio = r1.Mean / single[0].Mean
	cb.TGRatio = r2.Mean / single[1].Mean
	rep.Cluster = cb

	fmt.Fprintf(stdout, "\nhead + 2 loopback workers, even split, %s (threads: %d per worker, 1 on the head; one computes at a time):\n", cb.Model, threads)
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "  %-6s  %-18s  %-18s  %s\n", "test", "single node t/s", "head+2 workers t/s", "ratio")
	fmt.Fprintf(w, "  %-6s  %7.2f ± %-8.2f  %7.2f ± %-8.2f  %.2f\n", r1.Test, single[0].Mean, single[0].Stddev, r1.Mean, r1.Stddev, cb.PPRatio)
	fmt.Fprintf(w, "  %-6s  %7.2f ± %-8.2f  %7.2f ± %-8.2f  %.2f\n", r2.Test, single[1].Mean, single[1].Stddev, r2.Mean, r2.Stddev, cb.TGRatio)
	pt := cb.PerToken
	fmt.Fprintf(w, "  per generated token: %.2f ms = workers computing %.2f ms (%.1f graphs) + other round trips %.2f ms (%.1f commands in all)\n"+
		"                       + graph serialization %.3f ms + the head %.2f ms\n",
		pt.Total/1e3, pt.Compute/1e3, pt.Graphs, pt.RoundTrips/1e3, pt.Commands, pt.Serialize/1e3, pt.Head/1e3)
	fmt.Fprintf(w, "  model load: cold %.2f s, warm worker cache %.2f s (%.1fx faster)\n", cb.ColdLoadSec, cb.WarmLoadSec, cb.WarmSpeedup)
	w.Flush()
	if cb.WarmLoadSec <= 0 {
		return errors.New("warm load took no time")
	}
	return nil
}
