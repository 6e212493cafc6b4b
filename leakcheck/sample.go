package leakcheck

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/boxproj/box/api"
)

// The metrics compared across cycles. Each is a sum over the workers.
const (
	MetricBound       = "bound_bytes"        // bytes bound to connections (admin API)
	MetricDeviceUsed  = "device_used_bytes"  // memory_total - memory_free of every non-CPU device (admin API)
	MetricRSS         = "rss_bytes"          // VmRSS of the local worker processes
	MetricNVMLUsed    = "nvml_used_bytes"    // memory used on every GPU of this host (NVML)
	MetricNVMLProcess = "nvml_process_bytes" // GPU memory used by the local worker processes (NVML)
)

// judgedMetrics lists the metrics that decide verdicts. RSS decides only
// with Options.JudgeRSS: the C allocator keeps freed heap for reuse (glibc's
// per-thread arenas and adaptive mmap threshold), so a worker's RSS after a
// release can sit a model-sized buffer or more above its first baseline with
// nothing bound. Bound bytes are the exact figure for CPU workers; device and
// NVML memory are the driver's figures for GPUs.
func judgedMetrics(rss bool) []string {
	j := []string{MetricBound, MetricDeviceUsed, MetricNVMLUsed, MetricNVMLProcess}
	if rss {
		j = append(j, MetricRSS)
	}
	return j
}

var metricOrder = []string{MetricBound, MetricDeviceUsed, MetricRSS, MetricNVMLUsed, MetricNVMLProcess}

func contains(list []string, m string) bool {
	for _, j := range list {
		if j == m {
			return true
		}
	}
	return false
}

func (r *runner) node(ctx context.Context, w *workerRef) (api.NodeInfo, error) {
	return r.admin.Node(ctx, w.ep.Admin)
}

func (r *runner) conns(ctx context.Context, w *workerRef) ([]api.ConnInfo, error) {
	return r.admin.Connections(ctx, w.ep.Admin)
}

// workerSample is one reading of one worker.
type workerSample struct {
	err      error
	bound    uint64
	devUsed  uint64 // over accelerators only
	hasAccel bool
	conns    []api.ConnInfo // only when asked for
	rss      uint64
	rssOK    bool
}

// sample is one reading of every worker.
type sample struct {
	at       time.Time
	workers  []workerSample
	nvmlUsed uint64
	nvmlProc uint64
	nvmlOK   bool
}

// take reads every worker; withConns also lists their connections.
func (r *runner) take(ctx context.Context, withConns bool) sample {
	s := sample{at: time.Now(), workers: make([]workerSample, len(r.workers))}
	pids := map[int]bool{}
	for i, w := range r.workers {
		ws := &s.workers[i]
		// Connections first: a connection freed between the two reads
		// then shows as still holding bytes, never as gone while its bytes
		// still count in bound_bytes.
		if withConns {
			var err error
			if ws.conns, err = r.conns(ctx, w); err != nil {
				ws.err = err
				continue
			}
		}
		n, err := r.node(ctx, w)
		if err != nil {
			ws.err = err
			continue
		}
		ws.bound = n.BoundBytes
		for _, d := range n.Devices {
			// A CPU device's free memory is the host's, moved by every
			// process on it: only accelerators' figures are compared.
			if !strings.EqualFold(d.Type, "cpu") && d.MemoryTotal >= d.MemoryFree {
				ws.hasAccel = true
				ws.devUsed += d.MemoryTotal - d.MemoryFree
			}
		}
		if pid := w.pid(); pid > 0 {
			pids[pid] = true
			ws.rss, ws.rssOK = readRSS(pid)
		}
	}
	s.nvmlUsed, s.nvmlProc, s.nvmlOK = r.gpus.read(pids)
	return s
}

// err is the first worker that could not be read.
func (s sample) err(r *runner) error {
	for i, w := range s.workers {
		if w.err != nil {
			return fmt.Errorf("worker %s: %v", r.workers[i].ep.Addr, w.err)
		}
	}
	return nil
}

// metrics are the sums over workers of every metric measured.
func (s sample) metrics() map[string]uint64 {
	m := map[string]uint64{}
	var bound, dev, rss uint64
	rssOK, devOK := len(s.workers) > 0, false
	for _, w := range s.workers {
		bound += w.bound
		dev += w.devUsed
		devOK = devOK || w.hasAccel
		rss += w.rss
		rssOK = rssOK && w.rssOK
	}
	m[MetricBound] = bound
	if devOK {
		m[MetricDeviceUsed] = dev
	}
	if rssOK {
		m[MetricRSS] = rss
	}
	if s.nvmlOK {
		m[MetricNVMLUsed], m[MetricNVMLProcess] = s.nvmlUsed, s.nvmlProc
	}
	return m
}

// readRSS reads VmRSS from /proc/PID/status.
func readRSS(pid int) (uint64, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseUint(f[0], 10, 64)
				return n << 10, err == nil
			}
		}
	}
	return 0, false
}
