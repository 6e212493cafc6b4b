package leakcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	pollEvery     = 50 * time.Millisecond // release polling and peak sampling
	loadPollEvery = 5 * time.Millisecond  // kill-during-load: catch the upload
)

func (r *runner) run(ctx context.Context) (*Report, error) {
	rep := &Report{Schema: SchemaVersion, Started: time.Now().UTC(), Model: r.model, LoadModel: r.loadModel,
		Restarts: r.o.Restarts, Requests: r.o.Requests, ReleaseTimeoutSeconds: r.o.ReleaseTimeout.Seconds(),
		ToleranceBytes: r.o.Tolerance, NVML: r.gpus.describe(), Judged: r.judged, Cycles: []Cycle{}, Trends: []Trend{}, Problems: []string{}}
	for _, m := range r.o.Modes {
		rep.Modes = append(rep.Modes, string(m))
	}
	for _, w := range r.workers {
		rep.Workers = append(rep.Workers, WorkerRef{Addr: w.ep.Addr, Admin: w.ep.Admin, Local: w.local != nil, PID: w.pid()})
	}
	r.ours = make([]map[uint64]bool, len(r.workers))
	for i := range r.ours {
		r.ours[i] = map[uint64]bool{}
	}
	t0 := time.Now()
	var first map[string]uint64
	for i := 0; i < r.o.Restarts; i++ {
		if ctx.Err() != nil {
			rep.Problems = append(rep.Problems, "interrupted")
			break
		}
		m := r.o.Modes[i%len(r.o.Modes)]
		c, fatal := r.cycle(ctx, i+1, m, first)
		if first == nil && c.Baseline != nil {
			first = c.Baseline
			rep.Baseline = first
			for _, k := range metricOrder {
				if _, ok := first[k]; ok {
					rep.Metrics = append(rep.Metrics, k)
				}
			}
		}
		rep.Cycles = append(rep.Cycles, c)
		r.logf("cycle %d %s: %s %s", c.Cycle, c.Mode, c.Verdict, strings.Join(append(c.leakStrings(), c.Problems...), "; "))
		if fatal != nil {
			rep.Problems = append(rep.Problems, fatal.Error())
			break
		}
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.finish()
	return rep, nil
}

// peaks keeps the highest reading of every metric during a cycle.
type peaks struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (p *peaks) observe(s sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range s.metrics() {
		if v > p.m[k] {
			p.m[k] = v
		}
	}
}

// sampleEvery records peaks in the background until the returned func is called.
func (r *runner) sampleEvery(ctx context.Context, p *peaks) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.observe(r.take(ctx, false))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// cycle runs one restart. A non-nil error means the run cannot go on (a
// worker is gone).
func (r *runner) cycle(ctx context.Context, n int, m Mode, first map[string]uint64) (c Cycle, fatal error) {
	c = Cycle{Cycle: n, Mode: string(m), Leaks: []Leak{}, Problems: []string{}, Notes: []string{}}
	problem := func(format string, a ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, a...)) }
	defer func() { c.judge(first, r.o.Tolerance, r.judged) }()

	base := r.take(ctx, true)
	if err := base.err(r); err != nil {
		problem("worker not answering before the cycle: %v", err)
		return c, err
	}
	c.Baseline = base.metrics()
	if first == nil {
		first = c.Baseline
	}
	pk := &peaks{m: map[string]uint64{}}
	pk.observe(base)

	model := r.model
	if m == KillDuringLoad {
		model = r.loadModel
	}
	h, err := r.startHead(m, model)
	if err != nil {
		problem("head did not start: %v", err)
		return c, nil
	}
	defer func() {
		if !h.exited() {
			h.kill()
		}
	}()
	stopSampling := r.sampleEvery(ctx, pk)
	start := time.Now()
	var endAt time.Time

	if m == KillDuringLoad {
		endAt = r.killDuringLoad(ctx, &c, h, base, pk, start)
	} else {
		if err := r.waitHealthy(ctx, h, start); err != nil {
			stopSampling()
			problem("head failed to start: %v", err)
			h.kill()
			return c, r.workersAlive()
		}
		c.LoadSeconds = time.Since(start).Seconds()
		// Loaded: the peak is here at the latest (a fast load can fall
		// between two background samples).
		pk.observe(r.take(ctx, false))
		for i := 0; i < r.o.Requests; i++ {
			if err := r.chat(ctx, h.url, i); err != nil {
				problem("request %d: %v", i+1, err)
				break
			}
			c.RequestsOK++
		}
		pk.observe(r.take(ctx, false))
		switch m {
		case Graceful:
			h.signal(syscall.SIGTERM)
		case Kill:
			h.signal(syscall.SIGKILL)
		case Vanish:
			if err := r.ns.cut(); err != nil {
				problem("cutting the head's link: %v", err)
			}
		}
		endAt = time.Now()
	}
	stopSampling()

	// Wait for the memory to come back.
	deadline := endAt.Add(r.o.ReleaseTimeout)
	var after sample
	var leaks []Leak
	for {
		after = r.take(ctx, true)
		if err := after.err(r); err != nil {
			problem("worker not answering after the head ended: %v", err)
			return c, err
		}
		pk.observe(after)
		r.markOurs(base, after)
		leaks = newConnLeaks(r, base, after)
		if len(leaks) == 0 && withinTolerance(after.metrics(), first, r.o.Tolerance, r.judged) {
			c.Released = true
			c.ReleaseSeconds = time.Since(endAt).Seconds()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.ReleaseSeconds = time.Since(endAt).Seconds()
			break
		}
		time.Sleep(pollEvery)
	}
	c.After = after.metrics()
	c.Peak = pk.m
	c.Leaks = leaks
	for _, l := range leaks {
		c.LeakedBytes += l.Bytes
	}
	c.Foreign = foreignConns(r, after)
	for _, f := range c.Foreign {
		c.ForeignBytes += f.Bytes
	}

	// End the head for good.
	switch m {
	case Graceful:
		if !h.wait(time.Until(deadline) + 5*time.Second) {
			problem("head did not exit %v after SIGTERM", r.o.ReleaseTimeout)
		} else if d := h.exitDesc(); d != "exit status 0" {
			problem("head %s after SIGTERM: %s", d, h.lastLines(3))
		}
	case Vanish:
		h.kill()
		if err := r.ns.restore(); err != nil {
			problem("restoring the namespace's link: %v", err)
			return c, err
		}
	}
	h.kill()
	return c, r.workersAlive()
}

// killDuringLoad polls the workers and kills the head as soon as any of them
// has bytes bound while the head is not yet healthy.
func (r *runner) killDuringLoad(ctx context.Context, c *Cycle, h *head, base sample, pk *peaks, start time.Time) time.Time {
	hc := &http.Client{Timeout: 200 * time.Millisecond}
	for {
		s := r.take(ctx, false)
		pk.observe(s)
		for i, w := range s.workers {
			if w.err == nil && w.bound > base.workers[i].bound {
				h.signal(syscall.SIGKILL)
				end := time.Now()
				c.LoadSeconds = end.Sub(start).Seconds()
				c.KilledAtBoundBytes = s.metrics()[MetricBound] - base.metrics()[MetricBound]
				if healthy(hc, h.url) {
					c.Notes = append(c.Notes, "the head was already healthy when killed (upload finished before the kill)")
				} else {
					c.Notes = append(c.Notes, fmt.Sprintf("killed during the upload with %s bound", fmtBytes(int64(c.KilledAtBoundBytes))))
				}
				return end
			}
		}
		if h.exited() {
			c.Problems = append(c.Problems, fmt.Sprintf("head failed to start: %s: %s", h.exitDesc(), h.lastLines(3)))
			return time.Now()
		}
		if healthy(hc, h.url) {
			h.signal(syscall.SIGKILL)
			c.LoadSeconds = time.Since(start).Seconds()
			c.Notes = append(c.Notes, "the head became healthy before any byte was seen bound; killed after the load")
			return time.Now()
		}
		if time.Since(start) > r.o.LoadTimeout || ctx.Err() != nil {
			h.signal(syscall.SIGKILL)
			c.Problems = append(c.Problems, fmt.Sprintf("no bytes bound within %v of starting the head", r.o.LoadTimeout))
			return time.Now()
		}
		time.Sleep(loadPollEvery)
	}
}

func healthy(hc *http.Client, url string) bool {
	resp, err := hc.Get(url + "/health")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (r *runner) waitHealthy(ctx context.Context, h *head, start time.Time) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if healthy(hc, h.url) {
			return nil
		}
		if h.exited() {
			return fmt.Errorf("%s: %s", h.exitDesc(), h.lastLines(3))
		}
		if time.Since(start) > r.o.LoadTimeout {
			return fmt.Errorf("not healthy after %v: %s", r.o.LoadTimeout, h.lastLines(3))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chat sends one chat completion through the OpenAI API.
func (r *runner) chat(ctx context.Context, url string, i int) error {
	body, _ := json.Marshal(map[string]any{
		"model": r.modelID, "max_tokens": 8,
		"messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("leakcheck request %d: say hello", i+1)}},
	})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Choices) == 0 {
		return fmt.Errorf("unexpected answer: %.200s", b)
	}
	return nil
}

// workersAlive reports a local worker that died (an OOM kill, a crash).
func (r *runner) workersAlive() error {
	for _, w := range r.workers {
		if w.local != nil && w.local.exited() {
			return fmt.Errorf("local worker %s %s: %s", w.ep.Addr, w.local.exitDesc(), w.local.lastLines(3))
		}
	}
	return nil
}

// newConnLeaks lists bytes held by connections that did not exist before the
// cycle: what this cycle's head left bound.
func newConnLeaks(r *runner, base, after sample) []Leak {
	var out []Leak
	for i, w := range after.workers {
		known := map[uint64]bool{}
		for _, c := range base.workers[i].conns {
			known[c.ID] = true
		}
		for _, c := range w.conns {
			if known[c.ID] || c.Bytes == 0 {
				continue
			}
			out = append(out, Leak{Worker: r.workers[i].ep.Addr, Conn: c.ID, Peer: c.Peer, State: string(c.State), Buffers: len(c.Buffers), Bytes: c.Bytes})
		}
	}
	return out
}

// markOurs records the connections that appeared since the cycle's
// baseline: they are this cycle's head's.
func (r *runner) markOurs(base, now sample) {
	for i, w := range now.workers {
		if i >= len(r.ours) || i >= len(base.workers) {
			continue
		}
		known := map[uint64]bool{}
		for _, c := range base.workers[i].conns {
			known[c.ID] = true
		}
		for _, c := range w.conns {
			if !known[c.ID] {
				r.ours[i][c.ID] = true
			}
		}
	}
}

// foreignConns lists the connections holding bytes after the release that
// leakcheck did not open (a client of its own, another head): their bytes
// make the cycle's memory readings say nothing about the heads.
func foreignConns(r *runner, after sample) []Leak {
	out := []Leak{}
	for i, w := range after.workers {
		for _, c := range w.conns {
			if c.Bytes == 0 || i < len(r.ours) && r.ours[i][c.ID] {
				continue
			}
			out = append(out, Leak{Worker: r.workers[i].ep.Addr, Conn: c.ID, Peer: c.Peer, State: string(c.State), Buffers: len(c.Buffers), Bytes: c.Bytes})
		}
	}
	return out
}

// withinTolerance reports whether every judged metric is back within tol of
// the first baseline.
func withinTolerance(now, first map[string]uint64, tol uint64, judged []string) bool {
	for _, k := range judged {
		v, ok := now[k]
		b, ok2 := first[k]
		if ok && ok2 && v > b && v-b > tol {
			return false
		}
	}
	return true
}
