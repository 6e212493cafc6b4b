//go:build gpu

package gputest

// The NVIDIA checks of scripts/gpu-check.sh: the suite's device is CUDA0
// (BOX_GPU_DEVICE), and NVML, the driver's own account, must agree with
// box. Built into the test binary that gpu-check.sh carries to a GPU host
// (go test -c -tags gpu); it needs no Go there.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/probe"
	localprobe "github.com/boxproj/box/probe/local"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

func nvmlOrFail(t *testing.T) probe.NVML {
	t.Helper()
	nv := localprobe.NVMLOf(nil)
	if !nv.Available || len(nv.GPUs) == 0 {
		t.Fatalf("NVML: %s", nv.Status)
	}
	return nv
}

// box probe: the CUDA device's total and NVML's agree within 1%.
func TestNVMLProbeAgrees(t *testing.T) {
	nvmlOrFail(t)
	out, err := box("probe", "--json").Output()
	if err != nil {
		t.Fatalf("box probe --json: %v", err)
	}
	var rep probe.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	var ggmlTotal, nvmlTotal uint64
	for _, d := range rep.Nodes[0].Devices {
		switch {
		case d.Source == probe.SourceGGML && d.Name == dev:
			ggmlTotal = d.MemoryTotal
		case d.Source == probe.SourceNVML && nvmlTotal == 0:
			nvmlTotal = d.MemoryTotal
		}
	}
	if ggmlTotal == 0 || nvmlTotal == 0 {
		t.Fatalf("%s total %d, NVML total %d: %+v", dev, ggmlTotal, nvmlTotal, rep.Nodes[0].Devices)
	}
	diff := float64(ggmlTotal) - float64(nvmlTotal)
	if diff < 0 {
		diff = -diff
	}
	t.Logf("CHECK probe: %s %s, NVML %s, differ by %.3f%%", dev, probe.HumanBytes(ggmlTotal), probe.HumanBytes(nvmlTotal), 100*diff/float64(nvmlTotal))
	if diff > 0.01*float64(nvmlTotal) {
		t.Fatal("more than 1% apart")
	}
}

// A worker on the GPU serves a head whose greedy output is the CPU's
// (within greedy tolerance: the first half of the text equal).
func TestNVMLWorkerMatchesCPU(t *testing.T) {
	want := local(t)
	w := startWorker(t)
	h := startHead(t, w.rpc())
	got := h.complete(t)
	same := 0
	for same < len(got) && same < len(want) && got[same] == want[same] {
		same++
	}
	t.Logf("CHECK output: head over a %s worker %q, CPU %q: %d of %d bytes equal", dev, got, want, same, len(want))
	if got != want && same < len(want)/2 {
		t.Fatal("the GPU answer left the CPU's in its first half")
	}
}

func nvmlUsed(t *testing.T) (used uint64, pids map[int]uint64) {
	t.Helper()
	nv := nvmlOrFail(t)
	pids = map[int]uint64{}
	for _, g := range nv.GPUs {
		used += g.MemoryUsed
		for _, p := range g.Processes {
			pids[int(p.PID)] += p.UsedMemory
		}
	}
	return used, pids
}

// kill -9 of the head: within 2 s NVML lists no process of the worker's
// connection, and the GPU's used memory is back to the baseline.
func TestNVMLKilledHeadReleases(t *testing.T) {
	w := startWorker(t)
	base, _ := nvmlUsed(t)
	h := startHead(t, w.rpc())
	h.complete(t)
	var pids []int
	for _, c := range w.conns(t) {
		if c.PID != 0 {
			pids = append(pids, c.PID)
		}
	}
	peak, procs := nvmlUsed(t)
	onGPU := 0
	for _, p := range pids {
		if procs[p] > 0 {
			onGPU++
		}
	}
	if onGPU == 0 {
		t.Fatalf("NVML lists none of the compute processes %v: %v", pids, procs)
	}
	h.cmd.Process.Kill()
	t0 := time.Now()
	var after uint64
	for {
		used, procs := nvmlUsed(t)
		after = used
		gone := true
		for _, p := range pids {
			if _, ok := procs[p]; ok {
				gone = false
			}
		}
		if gone && used <= base+(2<<20) {
			break
		}
		if time.Since(t0) > 2*time.Second {
			t.Fatalf("2 s after kill -9: pids %v in NVML %v, used %s (baseline %s)", pids, procs, probe.HumanBytes(used), probe.HumanBytes(base))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("CHECK kill: NVML used %s → %s → %s, compute pids %v gone in %v", probe.HumanBytes(base), probe.HumanBytes(peak),
		probe.HumanBytes(after), pids, time.Since(t0).Round(time.Millisecond))
}

// box leakcheck --restarts 10 on GPU workers, with NVML verdicts.
func TestNVMLLeakcheckPasses(t *testing.T) {
	w1, w2 := startWorker(t), startWorker(t)
	code, rep := leakcheckRun(t, w1.rpc()+","+w2.rpc(), "--restarts", "10")
	if code != 0 || rep.Verdict != "pass" {
		t.Fatalf("exit %d: %s", code, rep.Summary)
	}
	if _, ok := rep.Baseline["nvml_used_bytes"]; !ok {
		t.Fatalf("no NVML figures in the report: %+v", rep.Baseline)
	}
	t.Logf("CHECK leakcheck: %s", rep.Summary)
}

// The leak fault on GPU workers is caught, with NVML's figure above its
// baseline.
func TestNVMLLeakcheckCatchesFault(t *testing.T) {
	var rpc []string
	for i := 0; i < 2; i++ {
		w := workertest.Start(t, worker.Config{Devices: []string{dev}, Threads: 2}, workertest.LeakOnDisconnect)
		rpc = append(rpc, w.Addr+"@"+strings.TrimPrefix(w.Admin, "http://"))
	}
	code, rep := leakcheckRun(t, strings.Join(rpc, ","), "--restarts", "2", "--release-timeout", "2s")
	if code != 1 || rep.Verdict != "leak" {
		t.Fatalf("exit %d, verdict %s: %s", code, rep.Verdict, rep.Summary)
	}
	last := rep.Cycles[len(rep.Cycles)-1]
	if last.Delta["nvml_used_bytes"] <= 0 {
		t.Fatalf("NVML did not see the leak: %+v", last.Delta)
	}
	t.Logf("CHECK fault: %s; NVML +%s", rep.Summary, probe.HumanBytes(uint64(last.Delta["nvml_used_bytes"])))
}
