// Package leakcheck restarts a head over box workers many times, in several
// ways (graceful stop, kill -9 while serving, kill -9 while the weights
// upload, a head whose network vanishes), and checks after each restart that
// the workers give every byte back: nothing left bound, device memory and
// process memory back to the first baseline within a tolerance, and no floor
// that creeps up across restarts.
//
// The figures come from the workers' admin API (/v1/node, /v1/connections),
// /proc/PID/status for workers this process started, and NVML when a GPU
// driver is present. The output is a table, and optionally JSON (SCHEMA.md)
// and JUnit XML.
package leakcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/synth"
)

// Mode is how a head is ended.
type Mode string

// The modes, in the order they are cycled.
const (
	Graceful       Mode = "graceful"         // SIGTERM after serving
	Kill           Mode = "kill"             // SIGKILL after serving
	KillDuringLoad Mode = "kill-during-load" // SIGKILL while the weights upload
	Vanish         Mode = "vanish"           // the head's link is cut: no FIN, no RST
)

// AllModes is the default --modes.
var AllModes = []Mode{Graceful, Kill, KillDuringLoad, Vanish}

// ParseModes reads a comma-separated --modes list.
func ParseModes(s string) ([]Mode, error) {
	var out []Mode
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ok := false
		for _, m := range AllModes {
			if string(m) == f {
				out, ok = append(out, m), true
			}
		}
		if !ok {
			return nil, fmt.Errorf("unknown mode %q (known: graceful, kill, kill-during-load, vanish)", f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no modes given")
	}
	return out, nil
}

// Options configure a run.
type Options struct {
	Restarts int    // cycles (default 10)
	Model    string // GGUF file; empty with Demo
	Demo     bool   // the built-in tiny synthetic model
	CacheDir string // where synthetic models are kept (Demo and the kill-during-load model)

	RPC     []api.Endpoint // existing workers; empty: start Workers local ones
	Workers int            // local workers to start (default 2)

	Modes          []Mode
	Requests       int           // chat requests per cycle (default 2)
	ReleaseTimeout time.Duration // how long memory may take to come back (default 30s)
	Tolerance      uint64        // bytes (default 16 MiB)
	LoadTimeout    time.Duration // how long a head may take to become healthy (default 10m)
	JudgeRSS       bool          // let local workers' RSS decide verdicts too (it is always reported)

	// AdminToken is the workers' admin token. Local workers are started
	// with it (a random one when empty).
	AdminToken string

	// NVML reads this host's GPUs (cmd/box gives local.NVML, box's one
	// NVML wrapper); nil: GPU memory is not watched. It is only asked when
	// every worker runs on this host.
	NVML func() *probe.NVML

	Box        string   // the box executable (default os.Executable())
	WorkerArgs []string // extra flags for local workers (tests)
	Log        io.Writer
}

// Validate refuses options that cannot make a run, in the words of box
// leakcheck's flags (a usage error there).
func (o Options) Validate() error {
	switch {
	case o.Model == "" && !o.Demo:
		return errors.New("give --model FILE or --demo")
	case o.Model != "" && o.Demo:
		return errors.New("--model and --demo exclude each other")
	case o.Restarts < 1 || o.Workers < 1:
		return errors.New("--restarts and --workers must be at least 1")
	case o.Requests < 0 || o.ReleaseTimeout <= 0 || o.Tolerance == 0:
		return errors.New("--requests must not be negative, --release-timeout and --tolerance must be positive")
	}
	return nil
}

func (o *Options) defaults() {
	if o.Restarts == 0 {
		o.Restarts = 10
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.AdminToken == "" && len(o.RPC) == 0 {
		var b [16]byte
		rand.Read(b[:])
		o.AdminToken = hex.EncodeToString(b[:])
	}
	if len(o.Modes) == 0 {
		o.Modes = AllModes
	}
	if o.Requests == 0 {
		o.Requests = 2
	}
	if o.ReleaseTimeout == 0 {
		o.ReleaseTimeout = 30 * time.Second
	}
	if o.Tolerance == 0 {
		o.Tolerance = 16 << 20
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			o.CacheDir = filepath.Join(d, "box")
		} else {
			o.CacheDir = filepath.Join(os.TempDir(), "box-cache")
		}
	}
}

// SetupError means the check could not run at all (exit 2): bad options, a
// missing model, a worker that does not answer, no network namespaces.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

func setupErr(format string, a ...any) error { return &SetupError{fmt.Errorf(format, a...)} }

// demoModel stands for the built-in demo model of `box serve --demo`.
const demoModel = "demo"

// loadModelConfig is the synthetic model the kill-during-load cycles use
// with --demo: about 87 MiB in f16, so the upload takes long enough to be
// interrupted (the tiny model uploads in a few milliseconds).
func loadModelConfig() synth.Config {
	c, _ := synth.Preset("tiny")
	c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.Type = 4, 1024, 8, 2, 2816, synth.TypeF16
	c.Name = "synth-leakcheck-load"
	return c
}

// Run performs the check. The report is returned whenever cycles ran (also
// with an error); a *SetupError means nothing could be measured.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if o.Restarts < 1 || o.Requests < 0 || o.Workers < 1 || o.ReleaseTimeout <= 0 {
		return nil, setupErr("--restarts and --workers must be at least 1, --requests not negative, --release-timeout positive")
	}
	if (o.Model == "") == !o.Demo {
		return nil, setupErr("give --model FILE or --demo (one of them)")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	r := &runner{o: o, log: o.Log, http: hc, admin: api.Client{HTTP: hc, Token: o.AdminToken}, judged: judgedMetrics(o.JudgeRSS)}
	defer func() {
		if r.cleanup != nil {
			r.cleanup()
		}
	}()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type runner struct {
	o     Options
	log   io.Writer
	http  *http.Client
	admin api.Client // the workers' admin APIs

	box       string
	model     string // served model
	modelID   string
	loadModel string // kill-during-load model

	judged  []string
	workers []*workerRef
	// ours holds, per worker, the connections that appeared during a cycle:
	// the heads leakcheck started. Any other connection is foreign.
	ours    []map[uint64]bool
	ns      *netns
	gpus    *gpus
	cleanup func()
}

// workerRef is one worker being watched.
type workerRef struct {
	ep    api.Endpoint
	local *proc // nil for --rpc workers
}

func (w *workerRef) pid() int {
	if w.local == nil {
		return 0
	}
	return w.local.cmd.Process.Pid
}

func (r *runner) logf(format string, a ...any) {
	fmt.Fprintf(r.log, "leakcheck: "+format+"\n", a...)
}

func (r *runner) setup(ctx context.Context) error {
	var cleanups []func()
	r.cleanup = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		cleanups = nil
	}
	r.box = r.o.Box
	if r.box == "" {
		exe, err := os.Executable()
		if err != nil {
			return setupErr("cannot find the box executable: %v", err)
		}
		r.box = exe
	}
	// The model.
	if r.o.Demo {
		// The heads run `box serve --demo`, so the model is exactly the
		// demo's; it is synthesized into CacheDir by the first head.
		r.model, r.modelID = demoModel, "box-demo"
	} else {
		st, err := os.Stat(r.o.Model)
		if err != nil {
			return setupErr("model: %v", err)
		}
		if !st.Mode().IsRegular() {
			return setupErr("model %s is not a regular file", r.o.Model)
		}
		r.model, r.modelID = r.o.Model, "leakcheck"
	}
	r.loadModel = r.model
	if err := os.MkdirAll(r.o.CacheDir, 0o755); err != nil {
		return setupErr("--cache-dir: %v", err)
	}
	if r.o.Demo && hasMode(r.o.Modes, KillDuringLoad) {
		p, err := synth.EnsureCached(ctx, r.o.CacheDir, loadModelConfig())
		if err != nil {
			return setupErr("kill-during-load model: %v", err)
		}
		r.loadModel = p
	}

	// Vanish needs a network namespace; set it up first, because local
	// workers must listen on its host-side address.
	if hasMode(r.o.Modes, Vanish) {
		if len(r.o.RPC) > 0 {
			for _, ep := range r.o.RPC {
				if ip := net.ParseIP(api.HostOf(ep.Addr)); ip == nil || api.IsLoopback(ep.Addr) {
					return setupErr("mode vanish: worker %s must listen on an address of this host other than loopback, reachable from a network namespace (or leave vanish out of --modes)", ep.Addr)
				}
			}
		}
		ns, err := newNetns(ctx)
		if err != nil {
			return setupErr("mode vanish: %v (it needs root and iproute2; or leave vanish out of --modes)", err)
		}
		cleanups = append(cleanups, ns.close)
		r.ns = ns
	}

	if len(r.o.RPC) > 0 {
		for _, ep := range r.o.RPC {
			r.workers = append(r.workers, &workerRef{ep: ep})
		}
	} else {
		host := "127.0.0.1"
		args := append([]string{"--threads", "1", "--log-level", "warn"}, r.o.WorkerArgs...)
		if r.ns != nil {
			host = r.ns.hostIP
			// A vanished head is found by TCP keepalive: make it quick.
			args = append(args, "--keepalive", "1s", "--keepalive-interval", "1s")
		}
		for i := 0; i < r.o.Workers; i++ {
			w, err := startWorker(ctx, r.box, host, r.o.AdminToken, args, r.o.LoadTimeout)
			if err != nil {
				return setupErr("local worker %d: %v", i+1, err)
			}
			cleanups = append(cleanups, w.local.stop)
			r.workers = append(r.workers, w)
			r.logf("started worker %d: rpc %s, admin %s, pid %d", i+1, w.ep.Addr, w.ep.Admin, w.pid())
		}
	}
	// Every worker must answer, on RPC and admin API.
	for _, w := range r.workers {
		c, err := net.DialTimeout("tcp", w.ep.Addr, 3*time.Second)
		if err != nil {
			return setupErr("worker %s does not answer: %v", w.ep.Addr, err)
		}
		c.Close()
		if w.ep.Admin == "" {
			return setupErr("worker %s: no admin API address (give host:port@adminhost:adminport)", w.ep.Addr)
		}
		if _, err := r.node(ctx, w); err != nil {
			return setupErr("worker %s: admin API %s does not answer: %v", w.ep.Addr, w.ep.Admin, err)
		}
	}
	// NVML, for GPUs of this host: only meaningful when the workers run here.
	local := true
	for _, w := range r.workers {
		if w.local == nil && !api.IsLocal(w.ep.Addr) {
			local = false
		}
	}
	if local {
		r.gpus = newGPUs(r.o.NVML)
	} else {
		r.gpus = &gpus{reason: "workers are not on this host"}
	}
	r.logf("NVML: %s", r.gpus.describe())
	return nil
}

func hasMode(ms []Mode, m Mode) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}
