// Package serve is box's head: it owns a llama.cpp model and its contexts
// and answers the OpenAI-compatible HTTP API.
package serve

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/cluster"
	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what `box serve` is started with.
type Config struct {
	ModelPath string
	// ModelID is the name clients use in "model"; default: the file's base
	// name without .gguf.
	ModelID  string
	Model    llama.ModelParams
	Parallel int // slots, each a context of CtxSize tokens; default 1
	Queue    int // requests that may wait for a slot; default 4*Parallel
	CtxSize  int // default 2048 or the model's training context if smaller
	Batch    int
	Threads  int
	// Grace is how long in-flight requests may run after a stop signal
	// before they are cancelled.
	Grace time.Duration
	// MaxBody bounds request bodies; default 8 MiB.
	MaxBody int64

	// Workers spread the model over box workers (--rpc). Split gives each
	// worker, then the local CPU unless NoLocal, its share (default: by
	// free memory). Reconnect reloads when a lost worker is back.
	Workers   []cluster.Endpoint
	Split     []float64
	NoLocal   bool
	Reconnect bool
	// Heartbeat is how often workers are checked for liveness; one that does
	// not answer within Heartbeat is failed. Default 5s.
	Heartbeat time.Duration
	// RPCTimeout, when set, is one fixed deadline for every worker command
	// instead of deadlines derived from the work (--rpc-timeout).
	RPCTimeout time.Duration
	// HashMemo, when set, is the file the FNV-1a hashes of uploads are
	// remembered in (remote.SetHashMemo), so a restarted head sends a warm
	// worker cache hashes without hashing every weight byte-serially again.
	HashMemo string
	// Probe, when set, answers GET /v1/probe with this node's memory view.
	Probe func(context.Context) any
	// APIKeys, when any, are required as "Authorization: Bearer KEY" on
	// every endpoint but /health and /metrics (those too with AuthAll).
	APIKeys []string
	AuthAll bool
}

// Server serves one model. Create it with New, run it with Run.
type Server struct {
	cfg Config
	log *slog.Logger
	met *metrics

	mu       sync.Mutex
	state    string // loading, ok, degraded, error
	stateErr string
	model    *llama.Model
	sl       *slots
	cl       *cluster.Cluster
	plan     *cluster.Plan
	nctx     int
	// skipFit loads even when the plan says a share does not fit, so tests
	// can exercise the rollback of a load that fails half-way.
	skipFit bool

	// hardStop is cancelled when the grace period is over: generations stop.
	hardStop context.Context
	cancel   context.CancelFunc
	started  time.Time

	tok       *tokenizer
	keyHashes [][32]byte
	// progress is the load's progress (0..1) as float32 bits.
	progress atomic.Uint32
	// cwork counts goroutines still in C with the model (an abandoned
	// tokenization); the model is freed only when it is zero.
	cwork sync.WaitGroup

	// users counts requests holding the model and slots (from ready() to
	// the end of the handler); reload and shutdown wait for them. stopping
	// makes ready() refuse, so that no user comes after the wait began.
	users    sync.WaitGroup
	stopping bool

	// tokenHook, when set (by tests), runs after each generated token, to
	// make generation slow enough to observe queueing and shutdown.
	tokenHook func()
}

// New prepares a server; nothing is loaded until Run.
// ResolveModel settles the model to serve: with demo the built-in tiny
// synthetic model (written into cacheDir the first time, served as
// "box-demo" unless ModelID says otherwise); either way the file is checked
// (gguf.Check), so a bad one is refused in one line before anything starts.
func (cfg *Config) ResolveModel(ctx context.Context, demo bool, cacheDir string) error {
	if demo {
		p, err := synth.EnsureCached(ctx, cacheDir, synth.Demo())
		if err != nil {
			return fmt.Errorf("demo model: %w", err)
		}
		cfg.ModelPath, cfg.ModelID = p, cmp.Or(cfg.ModelID, "box-demo")
	}
	return gguf.Check(cfg.ModelPath)
}

// Validate refuses a configuration box serve cannot run, in the words of
// its flags (a usage error there). New itself takes any values, with
// defaults for the zero ones.
func (cfg Config) Validate() error {
	switch {
	case cfg.Parallel < 1 || cfg.Parallel > 64:
		return errors.New("--parallel must be between 1 and 64")
	case cfg.Queue < 0 || cfg.CtxSize < 0 || cfg.Batch < 1 || cfg.Threads < 0:
		return errors.New("--queue, --ctx-size and --threads must not be negative, --batch must be positive")
	case cfg.Heartbeat <= 0 || cfg.RPCTimeout < 0:
		return errors.New("--heartbeat must be positive, --rpc-timeout not negative")
	case cfg.AuthAll && len(cfg.APIKeys) == 0:
		return errors.New("--auth-all needs --api-key or --api-key-file")
	}
	return nil
}

func New(cfg Config, log *slog.Logger) *Server {
	if cfg.HashMemo != "" {
		remote.SetHashMemo(cfg.HashMemo)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 1
	}
	if cfg.Queue < 0 {
		cfg.Queue = 0
	} else if cfg.Queue == 0 {
		cfg.Queue = 4 * cfg.Parallel
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 8 << 20
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.ModelID == "" {
		cfg.ModelID = strings.TrimSuffix(filepath.Base(cfg.ModelPath), ".gguf")
	}
	s := &Server{cfg: cfg, log: log, state: "loading", started: time.Now()}
	s.hardStop, s.cancel = context.WithCancel(context.Background())
	s.met = newMetrics(s)
	s.tok = newTokenizer(cfg.Queue)
	for _, k := range cfg.APIKeys {
		s.keyHashes = append(s.keyHashes, sha256.Sum256([]byte(k)))
	}
	return s
}

func (s *Server) slotsNow() *slots {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sl
}

// Handler is the HTTP API; usable before the model is loaded (/health says
// 503 until then).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.instrument("chat", s.handleChat))
	mux.HandleFunc("POST /v1/completions", s.instrument("completions", s.handleCompletions))
	mux.HandleFunc("GET /v1/models", s.instrument("models", s.handleModels))
	mux.HandleFunc("GET /v1/models/{id}", s.instrument("model", s.handleModel))
	mux.HandleFunc("POST /completion", s.instrument("native_completion", s.handleNative))
	mux.HandleFunc("POST /tokenize", s.instrument("tokenize", s.handleTokenize))
	mux.HandleFunc("POST /detokenize", s.instrument("detokenize", s.handleDetokenize))
	mux.HandleFunc("GET /props", s.instrument("props", s.handleProps))
	mux.HandleFunc("GET /slots", s.instrument("slots", s.handleSlots))
	mux.HandleFunc("POST /v1/embeddings", s.instrument("embeddings", s.handleEmbeddings))
	mux.HandleFunc("GET /health", s.instrument("health", s.handleHealth))
	mux.HandleFunc("GET /v1/cluster", s.instrument("cluster", s.handleCluster))
	if s.cfg.Probe != nil {
		mux.HandleFunc("GET /v1/probe", s.instrument("probe", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, s.cfg.Probe(r.Context()))
		}))
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: 404, Message: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), Type: "invalid_request_error", Code: strp("not_found")})
	})
	return s.withAuth(mux)
}

// Run loads the model, serves ln until ctx is cancelled, then shuts down:
// no new requests, in-flight ones get Grace to finish before they are
// cancelled, then contexts and model are freed. It returns the load error,
// if any, or the first error serving.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	s.log.Info("listening", "addr", "http://"+ln.Addr().String())

	loadErr := s.load(ctx)
	// With Reconnect, a load that failed because of a worker (it died, or
	// answered something impossible) is tried again until it is back; the
	// head serves /health as degraded meanwhile.
	for loadErr != nil && s.cfg.Reconnect && isWorkerFailure(loadErr) {
		s.setState("degraded", loadErr.Error())
		s.log.Error("load failed on a worker; retrying", "err", loadErr)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		if ctx.Err() != nil {
			break
		}
		loadErr = s.retryLoad(ctx)
	}
	if loadErr != nil {
		s.setState("error", loadErr.Error())
	}

	// The watch (which reloads) ends when the stop begins; the liveness
	// probes run through the grace period, so a worker that stops then still
	// fails the requests waiting on it. shutdown waits for both.
	var herr error
	var watchWG, beatWG sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	bctx, stopBeat := context.WithCancel(context.Background())
	defer stopWatch()
	defer stopBeat()
	if loadErr == nil {
		if s.cl != nil {
			beatWG.Go(func() { s.cl.Heartbeat(bctx, s.cfg.Heartbeat) })
			watchWG.Go(func() { s.watch(wctx) })
		}
		select {
		case <-ctx.Done():
		case err := <-serveErr:
			herr = fmt.Errorf("http: %w", err)
		}
	}
	s.shutdown(hs, func() { stopWatch(); watchWG.Wait() }, func() { stopBeat(); beatWG.Wait() })
	if herr != nil {
		return herr
	}
	return loadErr
}

// shutdown stops in one order, so that nothing is freed while in use:
//
//  1. stop accepting requests (and reloading); in-flight requests get Grace
//     to finish;
//  2. cancel what still runs: generation stops at the next token, requests
//     waiting for a slot or the tokenizer give up;
//  3. interrupt worker calls by closing every worker socket (no lock is
//     needed: a call stalled on a worker returns at once, and each worker
//     frees what this head holds there);
//  4. wait for every goroutine: the liveness probes, the handlers, the
//     slots' holders and tokenizations still in C;
//  5. free the contexts, then the model.
func (s *Server) shutdown(hs *http.Server, stopWatch, stopBeat func()) {
	s.log.Info("shutting down", "grace", s.cfg.Grace)
	stopWatch()
	graceCtx, cancel := context.WithTimeout(context.Background(), s.cfg.Grace)
	defer cancel()
	graceErr := hs.Shutdown(graceCtx)
	if graceErr != nil {
		s.log.Warn("grace period over, cancelling in-flight requests")
	}
	s.mu.Lock()
	s.stopping = true // ready() refuses from now on, so users only go down
	sl, m, cl := s.sl, s.model, s.cl
	s.sl, s.model = nil, nil
	s.mu.Unlock()
	s.cancel()
	if cl != nil {
		cl.Close()
	}
	stopBeat()
	if graceErr != nil {
		hs.Close()
	}
	waited := time.Now()
	s.users.Wait()
	if sl != nil {
		sl.drain()
	}
	s.cwork.Wait()
	if d := time.Since(waited); d > time.Second {
		s.log.Warn("requests took long to end after cancellation", "seconds", d.Seconds())
	}
	if sl != nil {
		sl.close()
	}
	if m != nil {
		m.Close()
	}
	s.log.Info("stopped; model and contexts freed")
}

func (s *Server) load(ctx context.Context) error {
	t0 := time.Now()
	params := s.cfg.Model
	s.progress.Store(0)
	params.Progress = func(p float32) { s.progress.Store(math.Float32bits(p)) }
	var (
		m    *llama.Model
		ctxs []*llama.Context
		err  error
	)
	if len(s.cfg.Workers) == 0 {
		m, ctxs, err = s.loadModel(ctx, params)
	} else {
		m, ctxs, err = s.loadOverWorkers(ctx, params)
	}
	if err != nil {
		return err
	}
	took := time.Since(t0)
	s.met.loadSeconds.Set(took.Seconds())
	s.mu.Lock()
	s.model, s.sl = m, newSlots(ctxs, s.cfg.Queue)
	s.nctx = ctxs[0].NCtx()
	s.state, s.stateErr = "ok", ""
	s.mu.Unlock()
	s.log.Info("model loaded", "path", s.cfg.ModelPath, "desc", m.Desc(), "bytes", m.Size(),
		"params", m.Params(), "slots", s.cfg.Parallel, "ctx", s.nctx, "seconds", took.Round(time.Millisecond).Seconds())
	return nil
}

// loadOverWorkers connects to the workers (once: a reload reuses the
// connections) and loads with cluster.Load, which closes every worker
// connection when the plan refuses or the load fails.
func (s *Server) loadOverWorkers(ctx context.Context, params llama.ModelParams) (*llama.Model, []*llama.Context, error) {
	if s.cl == nil {
		cl, err := cluster.Connect(ctx, s.cfg.Workers, s.log)
		if err != nil {
			return nil, nil, err
		}
		if s.cfg.RPCTimeout > 0 {
			cl.SetTimeout(s.cfg.RPCTimeout)
		}
		s.mu.Lock()
		s.cl = cl
		s.mu.Unlock()
	}
	type loaded struct {
		m    *llama.Model
		ctxs []*llama.Context
	}
	o := cluster.LoadOptions{Model: params, IgnoreFit: s.skipFit,
		PlanOptions: cluster.PlanOptions{CtxSize: s.ctxSizeHint(), Parallel: s.cfg.Parallel, Split: s.cfg.Split,
			NoLocal: s.cfg.NoLocal, LocalFree: ggml.Devices()[0].Free},
		Planned: func(plan *cluster.Plan) {
			s.log.Info("plan", "split", plan.String())
			s.mu.Lock()
			s.plan = plan
			s.mu.Unlock()
		}}
	l, _, err := cluster.Load(ctx, s.cl, s.cfg.ModelPath, o, func(ctx context.Context, p llama.ModelParams) (loaded, error) {
		m, ctxs, err := s.loadModel(ctx, p)
		return loaded{m, ctxs}, err
	})
	return l.m, l.ctxs, err
}

// isWorkerFailure reports whether err is a worker's failure, which a
// reconnect may cure (a plan that does not fit, or a bad model, is not).
func isWorkerFailure(err error) bool {
	var ne *remote.NodeError
	return errors.As(err, &ne)
}

// retryLoad reconnects to the workers (or connects, when the first
// connect failed) and loads again.
func (s *Server) retryLoad(ctx context.Context) error {
	if s.cl != nil {
		if err := s.cl.Reconnect(ctx); err != nil {
			return err
		}
	}
	return s.load(ctx)
}

// ctxSizeHint is the context the plan sizes KV caches for.
func (s *Server) ctxSizeHint() int {
	if s.cfg.CtxSize > 0 {
		return s.cfg.CtxSize
	}
	return 2048
}

// loadModel loads the model and one context per slot; on failure nothing
// stays allocated.
func (s *Server) loadModel(ctx context.Context, params llama.ModelParams) (*llama.Model, []*llama.Context, error) {
	m, err := llama.LoadModel(ctx, s.cfg.ModelPath, params)
	if err != nil {
		return nil, nil, err
	}
	// The move onto huge pages goes on while the model serves; say how it
	// ended. The wait ends with the mover, which ends by Model.Close.
	go func() {
		rep := m.WaitHugePages(context.WithoutCancel(ctx))
		if rep.State == llama.HugeOff || rep.State == llama.HugeNone || rep.State == llama.HugeStopped {
			return
		}
		s.log.Info("host weights on huge pages", "state", rep.State, "mib", rep.Bytes>>20, "of_mib", rep.Wanted>>20, "took", rep.Took.Round(time.Millisecond), "err", rep.Err)
	}()
	nctx := s.cfg.CtxSize
	if nctx <= 0 {
		nctx = min(2048, m.TrainCtx())
	}
	var ctxs []*llama.Context
	for i := 0; i < s.cfg.Parallel; i++ {
		c, err := m.NewContext(llama.ContextParams{NCtx: nctx, NBatch: s.cfg.Batch, Threads: s.cfg.Threads})
		if params.Check != nil {
			// A worker's failure is the reason, whatever llama.cpp said.
			if cerr := params.Check(); cerr != nil {
				if c != nil {
					c.Close()
				}
				c, err = nil, cerr
			}
		}
		if err != nil {
			for _, c := range ctxs {
				c.Close()
			}
			m.Close()
			return nil, nil, fmt.Errorf("model %s: slot %d: %w", s.cfg.ModelPath, i, err)
		}
		ctxs = append(ctxs, c)
	}
	return m, ctxs, nil
}

// watch turns a worker failure into the degraded state and, with
// Reconnect, reloads once every worker answers again.
func (s *Server) watch(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.cl.Err()
		s.mu.Lock()
		state := s.state
		if err != nil && state == "ok" {
			s.state, s.stateErr = "degraded", err.Error()
			s.log.Error("degraded: a worker is down", "err", err)
		}
		s.mu.Unlock()
		if err == nil || !s.cfg.Reconnect {
			continue
		}
		if rerr := s.cl.Reconnect(ctx); rerr != nil {
			s.log.Debug("reconnect failed", "err", rerr)
			continue
		}
		s.log.Info("workers are back; reloading")
		if err := s.reload(ctx); err != nil {
			s.log.Error("reload failed", "err", err)
			s.mu.Lock()
			s.state, s.stateErr = "degraded", err.Error()
			s.mu.Unlock()
		}
	}
}

// reload frees the model and contexts (waiting for in-flight requests,
// which fail fast on a dead worker), then loads again on the cluster.
func (s *Server) reload(ctx context.Context) error {
	s.mu.Lock()
	sl, m := s.sl, s.model
	s.sl, s.model = nil, nil
	s.state = "loading"
	s.mu.Unlock()
	// No new users now (the state is not ok); the current ones fail fast
	// on the dead worker.
	s.users.Wait()
	if sl != nil {
		sl.drain()
	}
	s.cwork.Wait()
	if sl != nil {
		sl.close()
	}
	if m != nil {
		m.Close()
	}
	// The model and contexts are freed, so the healthy workers hold
	// nothing of this head: only the failed ones are dialed again (a worker
	// that serves one connection at a time would never answer a second
	// one, and a box worker needs no new connection).
	if err := s.cl.Reconnect(ctx); err != nil {
		return err
	}
	return s.load(ctx)
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cl, plan, state, msg := s.cl, s.plan, s.state, s.stateErr
	s.mu.Unlock()
	body := api.ClusterView{State: state, Error: msg, Workers: []api.ClusterWorker{}}
	if cl != nil {
		body.Workers = cl.View(plan)
	}
	if plan != nil {
		body.LocalLayers = &plan.LocalLayers
		body.Plan = plan.Shares
	}
	writeJSON(w, 200, body)
}

func (s *Server) setState(state, msg string) {
	s.mu.Lock()
	s.state, s.stateErr = state, msg
	s.mu.Unlock()
}

// ready returns the model and slots, or a 503 while not serving. The
// caller must call done when it no longer uses them.
func (s *Server) ready() (m *llama.Model, sl *slots, done func(), aerr *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, nil, nil, &apiError{Status: 503, Message: "server is shutting down", Type: "server_error", Code: strp("unavailable")}
	}
	if s.state != "ok" || s.model == nil {
		msg := "model is loading"
		switch s.state {
		case "error":
			msg = "model failed to load: " + s.stateErr
		case "degraded":
			msg = "degraded: " + s.stateErr
		}
		return nil, nil, nil, &apiError{Status: 503, Message: msg, Type: "server_error", Code: strp("unavailable")}
	}
	s.users.Add(1)
	return s.model, s.sl, s.users.Done, nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	state, msg := s.state, s.stateErr
	s.mu.Unlock()
	body := map[string]any{"status": state}
	if msg != "" {
		body["error"] = msg
	}
	if state == "loading" {
		// How far the weights are: llama.cpp's progress, and the bytes
		// uploaded to each worker so far.
		p := float64(math.Float32frombits(s.progress.Load()))
		body["progress"] = p
		body["percent"] = math.Round(p*1000) / 10
		s.mu.Lock()
		cl := s.cl
		s.mu.Unlock()
		if cl != nil {
			body["workers"] = cl.Uploads()
		}
	}
	code := http.StatusOK
	if state != "ok" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, modelList{Object: "list", Data: []modelObject{{
		ID: s.cfg.ModelID, Object: "model", Created: s.started.Unix(), OwnedBy: "box",
	}}})
}

// statusWriter records the status for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) instrument(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		t0 := time.Now()
		defer func() {
			// Nothing a client sends may take the server down; a panic here is
			// a bug, answered with 500 and logged.
			if p := recover(); p != nil {
				s.log.Error("handler panic", "endpoint", endpoint, "panic", p)
				if sw.code == 0 {
					writeError(sw, &apiError{Status: 500, Message: "internal error", Type: "server_error"})
				}
			}
			code := sw.code
			if code == 0 {
				code = 200
			}
			s.met.requests.WithLabelValues(endpoint, fmt.Sprint(code)).Inc()
			lvl := slog.LevelInfo
			if endpoint == "health" || endpoint == "cluster" || endpoint == "probe" {
				lvl = slog.LevelDebug // polled
			}
			s.log.Log(r.Context(), lvl, "request", "request_id", requestID(r.Context()), "endpoint", endpoint,
				"code", code, "seconds", time.Since(t0).Seconds(), "peer", r.RemoteAddr)
		}()
		h(sw, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

// asAPIError maps an error to its HTTP form.
func asAPIError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, errQueueFull):
		return &apiError{Status: 429, Message: err.Error(), Type: "rate_limit_error", Code: strp("rate_limit_exceeded")}
	case errors.Is(err, llama.ErrPromptTooLong):
		return badRequest("messages", "context_length_exceeded", "%v", err)
	case errors.As(err, new(*remote.NodeError)):
		return &apiError{Status: 503, Message: err.Error(), Type: "server_error", Code: strp("worker_unavailable")}
	default:
		return &apiError{Status: 500, Message: err.Error(), Type: "server_error"}
	}
}
