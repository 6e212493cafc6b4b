//go:build vulkan || gpu

package gputest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/leakcheck"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/compute/computetest"
	"github.com/boxproj/box/worker/workertest"
)

// The device every test puts its work on, and the library it comes from:
// Vulkan0 (lavapipe on CI) unless BOX_GPU_DEVICE and BOX_GPU_LIB say
// otherwise (scripts/gpu-check.sh: CUDA0, libggml-cuda.so).
//
// BOX_GPU_DRY_CPU=1 runs the device-generic tests on the CPU device, with
// no library: scripts/gpu-check.sh's dry run on a host without a GPU.
var (
	dryCPU  = os.Getenv("BOX_GPU_DRY_CPU") == "1"
	dev     = envOr("BOX_GPU_DEVICE", map[bool]string{false: "Vulkan0", true: "CPU"}[dryCPU])
	devLib  = envOr("BOX_GPU_LIB", "libggml-vulkan.so")
	devType = map[bool]string{false: "gpu", true: "cpu"}[dryCPU]
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// backendOf is the ggml backend of a device name: Vulkan0 → Vulkan.
func backendOf(name string) string { return strings.TrimRight(name, "0123456789") }

var (
	boxBin string // bin/box, built by make
	model  string // a synthetic model, shared by the tests
)

// TestMain checks the suite can run at all (it fails, never skips, when the
// library or the device is missing), then runs it. The test binary doubles
// as the compute process of in-process workers (the leak fault).
func TestMain(m *testing.M) {
	computetest.MaybeRun()
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "gputest: "+format+"\n", a...)
		os.Exit(1)
	}
	dir := os.Getenv(ggml.EnvBackends)
	if dir == "" && !dryCPU {
		fail("BOX_BACKENDS is not set (run make test-vulkan)")
	}
	if _, err := os.Stat(filepath.Join(dir, devLib)); err != nil && !dryCPU {
		fail("no %s backend: %v (make vulkan)", dev, err)
	}
	boxBin = os.Getenv("BOX_BIN")
	if _, err := os.Stat(boxBin); err != nil {
		fail("BOX_BIN %q: %v (make build)", boxBin, err)
	}
	// Mesa's lavapipe is a CPU-type Vulkan device, which ggml skips unless
	// it is named; a real GPU host sets its own (or none).
	if _, ok := os.LookupEnv("GGML_VK_VISIBLE_DEVICES"); !ok && strings.HasPrefix(dev, "Vulkan") {
		os.Setenv("GGML_VK_VISIBLE_DEVICES", "0")
	}
	tmp, err := os.MkdirTemp("", "box-gputest-")
	if err != nil {
		fail("%v", err)
	}
	os.Setenv("MESA_SHADER_CACHE_DIR", filepath.Join(tmp, "mesa"))
	// The workers' admin API wants a token; box reads it from here (the
	// workers, leakcheck) and so does getJSON.
	if os.Getenv("BOX_ADMIN_TOKEN") == "" {
		os.Setenv("BOX_ADMIN_TOKEN", fmt.Sprintf("gputest-%d-%d", os.Getpid(), time.Now().UnixNano()))
	}
	libs := ggml.LoadBackends(dir)
	found := false
	for _, d := range ggml.Devices() {
		if d.Name == dev {
			found = true
			fmt.Fprintf(os.Stderr, "gputest: %s %q (%s, backend %s), %d MiB\n", d.Name, d.Description, d.Type, d.Backend, d.Total>>20)
		}
	}
	if !found {
		fail("no device %s after loading %v", dev, libs)
	}
	cfg, _ := synth.Preset("tiny")
	model = filepath.Join(tmp, "tiny.gguf")
	if err := synth.Write(context.Background(), model, cfg); err != nil {
		fail("synth: %v", err)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// box runs bin/box with this process's environment (BOX_BACKENDS and the
// Vulkan settings included).
func box(args ...string) *exec.Cmd {
	cmd := exec.Command(boxBin, args...)
	cmd.Env = os.Environ()
	return cmd
}

// start runs a long-lived box process, its stderr to the test's; it is
// stopped (SIGTERM, then SIGKILL) at cleanup.
func start(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	cmd.Stderr = os.Stderr
	return workertest.StartProcess(t, cmd)
}

func getJSON(url string, v any) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("BOX_ADMIN_TOKEN"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !ok() {
		if time.Since(t0) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0)
}

// vkWorker is a `box worker --device Vulkan0` process.
type vkWorker struct {
	cmd         *exec.Cmd
	addr, admin string
}

func startWorker(t *testing.T, extra ...string) *vkWorker {
	t.Helper()
	w := &vkWorker{addr: workertest.FreeAddr(t), admin: workertest.FreeAddr(t)}
	args := append([]string{"worker", "--listen", w.addr, "--admin", w.admin, "--device", dev, "--threads", "2", "--log-level", "warn", "--grace", "1s"}, extra...)
	w.cmd = start(t, box(args...))
	waitFor(t, "worker admin API", 60*time.Second, func() bool { return getJSON(w.url("/v1/node"), &worker.NodeInfo{}) == nil })
	return w
}

func (w *vkWorker) url(p string) string { return "http://" + w.admin + p }
func (w *vkWorker) rpc() string         { return w.addr + "@" + w.admin }

func (w *vkWorker) node(t *testing.T) worker.NodeInfo {
	t.Helper()
	var n worker.NodeInfo
	if err := getJSON(w.url("/v1/node"), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (w *vkWorker) conns(t *testing.T) []worker.ConnInfo {
	t.Helper()
	var cs []worker.ConnInfo
	if err := getJSON(w.url("/v1/connections"), &cs); err != nil {
		var wrap struct {
			Connections []worker.ConnInfo `json:"connections"`
		}
		if err2 := getJSON(w.url("/v1/connections"), &wrap); err2 != nil {
			t.Fatal(err)
		}
		cs = wrap.Connections
	}
	return cs
}

// rss is the resident memory of pid in bytes (0 when it is gone).
func rss(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// head is a `box serve` process over workers (all layers on them).
type head struct {
	cmd *exec.Cmd
	url string
}

func startHead(t *testing.T, rpc string) *head {
	t.Helper()
	addr := workertest.FreeAddr(t)
	h := &head{url: "http://" + addr}
	h.cmd = start(t, box("serve", "--model", model, "--listen", addr, "--rpc", rpc, "--no-local", "--ctx-size", "256", "--threads", "1"))
	waitFor(t, "head /health", 120*time.Second, func() bool {
		resp, err := http.Get(h.url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return h
}

const prompt = "The quick brown fox"
const maxTokens = 24

func (h *head) complete(t *testing.T) string {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","prompt":%q,"max_tokens":%d,"temperature":0}`, prompt, maxTokens)
	resp, err := http.Post(h.url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
		t.Fatalf("completion: %s %v %+v", resp.Status, err, out)
	}
	return out.Choices[0].Text
}

// local generates greedily in this process with every layer on devs
// (none: the CPU), as /v1/completions does.
func local(t *testing.T, devs ...string) string {
	t.Helper()
	if len(devs) == 1 && devs[0] == "CPU" {
		devs = nil // the CPU is where a model without devices stays
	}
	m, err := llama.LoadModel(context.Background(), model, llama.ModelParams{Devices: devs, GPULayers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(llama.ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toks, err := m.Tokenize(prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: toks, MaxTokens: maxTokens}, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res.Text
}

// box probe lists Vulkan0 with its backend, and the library it came from.
func TestProbeListsVulkan0(t *testing.T) {
	out, err := box("probe", "--json").Output()
	if err != nil {
		t.Fatalf("box probe --json: %v", err)
	}
	var rep probe.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	var got *probe.Device
	for i, d := range rep.Nodes[0].Devices {
		if d.Name == dev {
			got = &rep.Nodes[0].Devices[i]
		}
	}
	if got == nil || got.Backend != backendOf(dev) || got.Type != "gpu" || got.MemoryTotal == 0 {
		t.Fatalf("devices %+v", rep.Nodes[0].Devices)
	}
	loaded := false
	for _, b := range rep.Nodes[0].Backends {
		loaded = loaded || b.Backend == backendOf(dev)
	}
	if !loaded {
		t.Fatalf("backends %+v", rep.Nodes[0].Backends)
	}
	text, err := box("probe").Output()
	if err != nil || !bytes.Contains(text, []byte(dev+" ("+backendOf(dev)+")")) {
		t.Fatalf("box probe: %v\n%s", err, text)
	}
	t.Logf("%s", text)
}

// A worker exposing only Vulkan0 serves the model to a head; the greedy
// answer is the one this process computes with the model on its own
// Vulkan0, and the head's buffers are Vulkan0 buffers on the worker.
func TestWorkerOnVulkanMatchesSingleNode(t *testing.T) {
	want := local(t, dev)
	cpu := local(t)
	t.Logf("single node on %s: %q (CPU: %q)", dev, want, cpu)
	w := startWorker(t)
	n := w.node(t)
	if len(n.Devices) != 1 || n.Devices[0].Name != dev || n.Devices[0].Type != devType {
		t.Fatalf("worker devices %+v", n.Devices)
	}
	h := startHead(t, w.rpc())
	got := h.complete(t)
	if got != want {
		t.Fatalf("head over a %s worker: %q, single node: %q", dev, got, want)
	}
	n = w.node(t)
	if n.Devices[0].BoundBytes == 0 {
		t.Fatalf("nothing bound on %s: %+v", dev, n.Devices[0])
	}
	for _, c := range w.conns(t) {
		for _, b := range c.Buffers {
			if b.Device != dev {
				t.Fatalf("buffer %d on %q", b.ID, b.Device)
			}
		}
	}
	t.Logf("%s bound on %s", probe.HumanBytes(n.Devices[0].BoundBytes), dev)
}

// kill -9 of the head: the worker is back to 0 bytes bound, its compute
// processes are gone and its memory (supervisor plus children) is back to
// the baseline.
func TestKilledHeadFreesVulkanWorker(t *testing.T) {
	w := startWorker(t)
	sup := w.cmd.Process.Pid
	base := rss(sup)
	h := startHead(t, w.rpc())
	h.complete(t)
	n := w.node(t)
	var pids []int
	var peak uint64 = rss(sup)
	for _, c := range w.conns(t) {
		if c.PID != 0 {
			pids = append(pids, c.PID)
			peak += rss(c.PID)
		}
	}
	if n.BoundBytes == 0 || len(pids) == 0 {
		t.Fatalf("before the kill: %d bytes bound, compute pids %v", n.BoundBytes, pids)
	}
	h.cmd.Process.Kill()
	took := waitFor(t, "0 bytes bound and no connections after kill -9", 10*time.Second, func() bool {
		n := w.node(t)
		return n.BoundBytes == 0 && n.Connections == 0
	})
	waitFor(t, "compute processes gone", 5*time.Second, func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	})
	after := rss(sup)
	t.Logf("kill -9: %s bound → 0 in %v; worker RSS %s before, %s with the head (supervisor + %d compute), %s after",
		probe.HumanBytes(n.BoundBytes), took.Round(time.Millisecond), probe.HumanBytes(base), probe.HumanBytes(peak), len(pids), probe.HumanBytes(after))
	if after > base+16<<20 {
		t.Fatalf("worker RSS %d after, baseline %d", after, base)
	}
}

// --max-memory is a quota on the Vulkan device: an allocation past it is
// refused, and what fits is bound there.
func TestQuotaRefusesOnVulkan(t *testing.T) {
	w := startWorker(t, "--max-memory", "64MiB")
	c := workertest.Dial(t, w.addr)
	ctx := context.Background()
	h1, _, err := c.AllocBuffer(ctx, 0, 48<<20)
	if err != nil || h1 == 0 {
		t.Fatalf("48 MiB under a 64 MiB quota: handle %d, %v", h1, err)
	}
	h2, _, err := c.AllocBuffer(ctx, 0, 32<<20)
	if err == nil && h2 != 0 {
		t.Fatalf("32 MiB more was granted (handle %d)", h2)
	}
	n := w.node(t)
	if d := n.Devices[0]; d.Name != dev || d.BoundBytes < 48<<20 || d.BoundBytes > 64<<20 || d.MaxMemory != 64<<20 {
		t.Fatalf("device %+v", d)
	}
	t.Logf("refused: %v; %s bound on %s", err, probe.HumanBytes(n.Devices[0].BoundBytes), dev)
	c.Close()
	waitFor(t, "quota test buffers freed", 5*time.Second, func() bool { return w.node(t).BoundBytes == 0 })
}

// leakcheckRun runs bin/box leakcheck and returns its exit code and report.
func leakcheckRun(t *testing.T, rpc string, extra ...string) (int, leakcheck.Report) {
	t.Helper()
	js := filepath.Join(t.TempDir(), "r.json")
	args := append([]string{"leakcheck", "--model", model, "--rpc", rpc, "--modes", "graceful,kill", "--json", js}, extra...)
	cmd := box(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	}()
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("box leakcheck: exit %d\n%s", code, out.String())
	var rep leakcheck.Report
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return code, rep
}

// leakcheck passes on Vulkan workers.
func TestLeakcheckPassesOnVulkan(t *testing.T) {
	w1, w2 := startWorker(t), startWorker(t)
	code, rep := leakcheckRun(t, w1.rpc()+","+w2.rpc(), "--restarts", "4")
	if code != 0 || rep.Verdict != "pass" {
		t.Fatalf("exit %d: %s", code, rep.Summary)
	}
	for _, c := range rep.Cycles {
		if c.Peak["bound_bytes"] == 0 || c.After["bound_bytes"] != 0 || c.RequestsOK != 2 {
			t.Fatalf("cycle %+v", c)
		}
	}
}

// leakcheck catches the leak fault (compute processes that keep their
// memory after the connection ended) on Vulkan workers.
func TestLeakcheckCatchesLeakOnVulkan(t *testing.T) {
	var rpc []string
	for i := 0; i < 2; i++ {
		w := workertest.Start(t, worker.Config{Devices: []string{dev}, Threads: 2}, workertest.LeakOnDisconnect)
		rpc = append(rpc, w.Addr+"@"+strings.TrimPrefix(w.Admin, "http://"))
	}
	code, rep := leakcheckRun(t, strings.Join(rpc, ","), "--restarts", "2", "--release-timeout", "2s")
	if code != 1 || rep.Verdict != "leak" {
		t.Fatalf("exit %d, verdict %s: %s", code, rep.Verdict, rep.Summary)
	}
	t.Logf("%s", rep.Summary)
}
