package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
)

// LoadBench is the load suite: the time from connecting to two loopback
// workers to a loaded model with its context (what box serve does before
// /health answers), against raw loopback TCP moving the same bytes.
type LoadBench struct {
	Model string `json:"model"`
	// Bytes is the tensor data the head sent to (or offered by hash to)
	// the workers in one load.
	Bytes int64 `json:"bytes"`
	// Per repetition, interleaved: raw TCP for Bytes; workers without a
	// cache; workers with --cache and empty caches, then the same weights
	// again on them (the warm load, after the head's background pass over
	// the file). Each repetition starts with a fresh upload hash memo, as a
	// newly started head has.
	RawSec []float64 `json:"raw_tcp_seconds"`
	// RawFreshSec is the floor of any upload of the same bytes: each
	// worker's share sent at once over its own connection to its own
	// process, which receives into newly mapped memory (Sink's fresh mode).
	RawFreshSec  []float64 `json:"raw_tcp_fresh_seconds"`
	ColdSec      []float64 `json:"cold_seconds"`
	CacheColdSec []float64 `json:"cache_cold_seconds"`
	WarmSec      []float64 `json:"warm_seconds"`
	// Where the cold load's time goes, per repetition: connecting to the
	// workers, planning (their memory, the file's layout), llama.cpp's
	// model load with the upload, and the context (KV cache, graph
	// reserve).
	ColdPhases []LoadPhases `json:"cold_phases"`
	WarmPhases []LoadPhases `json:"warm_phases"`
	// Mean ratios to the raw TCP time of the same repetition.
	ColdRatio      float64 `json:"cold_over_raw"`
	ColdFreshRatio float64 `json:"cold_over_raw_fresh"`
	CacheColdRatio float64 `json:"cache_cold_over_raw"`
	WarmRatio      float64 `json:"warm_over_raw"`
}

// LoadPhases splits one load's time, in seconds.
type LoadPhases struct {
	Connect float64 `json:"connect"`
	Plan    float64 `json:"plan"`
	Model   float64 `json:"model"`
	Context float64 `json:"context"`
}

// readWhole reads the file at path once, leaving it in the page cache.
func readWhole(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func benchLoad(ctx context.Context, stdout io.Writer, rep *Report, o Options) error {
	path, err := presetModel(ctx, o, synth.TypeQ8_0)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "box-bench-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	lb := &LoadBench{Model: filepath.Base(path)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const chunk = 64 << 20
	sink, err := startSink(ctx, o.Exe, chunk, false)
	if err != nil {
		return err
	}
	defer sink.stop()
	var fresh [2]*benchWorker
	for i := range fresh {
		if fresh[i], err = startSink(ctx, o.Exe, chunk, true); err != nil {
			return err
		}
		defer fresh[i].stop()
	}
	// Every repetition finds the file in the page cache, as the raw
	// transfers find their bytes in memory; otherwise the first one alone
	// would read the disk.
	if err := readWhole(path); err != nil {
		return err
	}

	// load is serve's sequence: connect, plan, load, one context.
	var ph LoadPhases  // of the last load
	var shares []int64 // what the last load sent each worker
	load := func(ws []*benchWorker) (time.Duration, int64, error) {
		eps := []cluster.Endpoint{{Addr: ws[0].addr}, {Addr: ws[1].addr}}
		t0 := time.Now()
		since := func(t *time.Time) float64 {
			now := time.Now()
			d := now.Sub(*t).Seconds()
			*t = now
			return d
		}
		mark := t0
		cl, err := cluster.Connect(ctx, eps, quiet)
		if err != nil {
			return 0, 0, err
		}
		defer cl.Close()
		ph.Connect = since(&mark)
		lo := cluster.LoadOptions{PlanOptions: cluster.PlanOptions{CtxSize: 512, Parallel: 1, NoLocal: true, Split: []float64{1, 1}}}
		lo.Planned = func(*cluster.Plan) { ph.Plan = since(&mark) }
		m, _, err := cluster.Load(ctx, cl, path, lo, func(ctx context.Context, p llama.ModelParams) (*llama.Model, error) {
			return llama.LoadModel(ctx, path, p)
		})
		if err != nil {
			return 0, 0, err
		}
		defer m.Close()
		ph.Model = since(&mark)
		c, err := m.NewContext(llama.ContextParams{NCtx: 512, Threads: 1})
		if err != nil {
			return 0, 0, err
		}
		ph.Context = since(&mark)
		d := time.Since(t0)
		c.Close()
		var sent int64
		shares = shares[:0]
		for _, n := range cl.Nodes() {
			sent += n.Uploaded()
			shares = append(shares, n.Uploaded())
		}
		return d, sent, cl.Err()
	}
	workers := func(cache bool, r int) ([]*benchWorker, func(), error) {
		var ws []*benchWorker
		stop := func() {
			for _, w := range ws {
				w.stop()
			}
		}
		for i := 0; i < 2; i++ {
			var extra []string
			if cache {
				extra = []string{"--cache", filepath.Join(tmp, fmt.Sprintf("cache-%d-%d", r, i))}
			}
			w, err := startBenchWorker(ctx, o.Exe, o.Threads, extra...)
			if err != nil {
				stop()
				return nil, nil, err
			}
			ws = append(ws, w)
		}
		return ws, stop, nil
	}
	raw := func() (float64, error) {
		l, err := newLoopback(sink.addr, chunk)
		if err != nil {
			return 0, err
		}
		defer l.close()
		n := (lb.Bytes + chunk - 1) / chunk
		t0 := time.Now()
		for i := int64(0); i < n; i++ {
			if _, err := l.once(); err != nil {
				return 0, err
			}
		}
		return time.Since(t0).Seconds() * float64(lb.Bytes) / float64(n*chunk), nil
	}
	// rawFresh sends each worker's share of the last load to its own fresh
	// sink, both at once, over new connections (so the sinks map new memory).
	rawFresh := func() (float64, error) {
		if len(shares) != len(fresh) {
			return 0, fmt.Errorf("raw fresh: %d workers loaded, %d sinks", len(shares), len(fresh))
		}
		var ls []*loopback
		defer func() {
			for _, l := range ls {
				l.close()
			}
		}()
		for _, s := range fresh {
			l, err := newLoopback(s.addr, chunk)
			if err != nil {
				return 0, err
			}
			ls = append(ls, l)
		}
		errs := make(chan error, len(ls))
		t0 := time.Now()
		for i, l := range ls {
			go func() {
				for left := shares[i]; left > 0; left -= chunk {
					if err := l.sendFresh(int(min(left, chunk))); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range ls {
			if err := <-errs; err != nil {
				return 0, err
			}
		}
		return time.Since(t0).Seconds(), nil
	}
	defer remote.SetHashMemo("")
	for r := 0; r < o.Reps; r++ {
		remote.WaitHashing()
		// A new head: nothing remembered of earlier uploads.
		remote.SetHashMemo(filepath.Join(tmp, fmt.Sprintf("memo-%d", r)))
		ws, stop, err := workers(false, r)
		if err != nil {
			return err
		}
		cold, sent, err := load(ws)
		stop()
		if err != nil {
			return err
		}
		lb.ColdPhases = append(lb.ColdPhases, ph)
		lb.Bytes = sent
		remote.WaitHashing()
		rawS, err := raw()
		if err != nil {
			return err
		}
		freshS, err := rawFresh()
		if err != nil {
			return err
		}
		remote.SetHashMemo(filepath.Join(tmp, fmt.Sprintf("memo-cache-%d", r)))
		ws, stop, err = workers(true, r)
		if err != nil {
			return err
		}
		cc, _, err := load(ws)
		// The warm load follows the head's background pass over the file
		// (the hashes of what the cold caches missed).
		remote.WaitHashing()
		if err == nil {
			var warm time.Duration
			if warm, _, err = load(ws); err == nil {
				lb.WarmSec = append(lb.WarmSec, warm.Seconds())
				lb.WarmPhases = append(lb.WarmPhases, ph)
			}
		}
		stop()
		if err != nil {
			return err
		}
		lb.RawSec = append(lb.RawSec, rawS)
		lb.RawFreshSec = append(lb.RawFreshSec, freshS)
		lb.ColdSec = append(lb.ColdSec, cold.Seconds())
		lb.CacheColdSec = append(lb.CacheColdSec, cc.Seconds())
	}
	mean := func(xs []float64) float64 { m, _ := MeanStd(xs); return m }
	// ratioTo is the mean ratio of xs to the same repetitions of by.
	ratioTo := func(xs, by []float64) float64 {
		s := 0.0
		for i := range xs {
			s += xs[i] / by[i]
		}
		return s / float64(len(xs))
	}
	ratio := func(xs []float64) float64 { return ratioTo(xs, lb.RawSec) }
	lb.ColdRatio, lb.CacheColdRatio, lb.WarmRatio = ratio(lb.ColdSec), ratio(lb.CacheColdSec), ratio(lb.WarmSec)
	lb.ColdFreshRatio = ratioTo(lb.ColdSec, lb.RawFreshSec)
	rep.Load = lb

	fmt.Fprintf(stdout, "\nmodel load over 2 loopback workers, %s, %.0f MB sent (connect, plan, load, one context; %d reps):\n", lb.Model, float64(lb.Bytes)/1e6, o.Reps)
	row := func(name string, xs []float64, ratio float64) {
		m, s := MeanStd(xs)
		if ratio == 0 {
			fmt.Fprintf(stdout, "  %-30s %6.3f ± %-6.3f s\n", name, m, s)
			return
		}
		fmt.Fprintf(stdout, "  %-30s %6.3f ± %-6.3f s  %.2fx raw TCP\n", name, m, s, ratio)
	}
	row("raw loopback TCP, same bytes", lb.RawSec, 0)
	m, sd := MeanStd(lb.RawFreshSec)
	fmt.Fprintf(stdout, "  %-30s %6.3f ± %-6.3f s  %.2fx raw TCP (the floor: 2 receivers, fresh memory)\n", "raw TCP into fresh memory", m, sd, ratio(lb.RawFreshSec))
	row("no worker cache", lb.ColdSec, lb.ColdRatio)
	fmt.Fprintf(stdout, "  %-30s %.2fx the floor\n", "", lb.ColdFreshRatio)
	row("--cache, cold", lb.CacheColdSec, lb.CacheColdRatio)
	row("--cache, warm (same weights)", lb.WarmSec, lb.WarmRatio)
	phases := func(name string, ps []LoadPhases) {
		var conn, plan, model, cctx []float64
		for _, p := range ps {
			conn, plan, model, cctx = append(conn, p.Connect), append(plan, p.Plan), append(model, p.Model), append(cctx, p.Context)
		}
		fmt.Fprintf(stdout, "  %-30s connect %.3f, plan %.3f, model+upload %.3f, context %.3f s\n", name, mean(conn), mean(plan), mean(model), mean(cctx))
	}
	phases("by phase, no worker cache", lb.ColdPhases)
	phases("by phase, --cache warm", lb.WarmPhases)
	return nil
}
