package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/worker"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen      = fs.String("listen", "127.0.0.1:50052", "RPC address (loopback by default; any other address must be given explicitly)")
		admin       = fs.String("admin", "127.0.0.1:50053", "admin HTTP address (empty to disable)")
		devices     = fs.String("device", "", "comma-separated ggml devices to expose (default: all)")
		threads     = fs.Int("threads", 0, "compute threads (default: all CPUs)")
		cacheDir    = fs.String("cache", "", "directory for the tensor cache (SET_TENSOR_HASH); off when empty")
		maxMem      = fs.String("max-memory", "", "most bytes bound per device, e.g. 4GiB (default: the device's size)")
		maxConn     = fs.String("max-memory-per-conn", "", "most bytes one connection may hold (default: no limit)")
		keepalive   = fs.Duration("keepalive", 10*time.Second, "TCP keepalive idle time; probes every --keepalive-interval, 3 of them")
		kaInterval  = fs.Duration("keepalive-interval", 5*time.Second, "TCP keepalive probe interval")
		idleTimeout = fs.Duration("idle-timeout", 0, "reap connections silent for longer (0 = off: an idle head with a loaded model is legitimate)")
		allow       = fs.String("allow", "", "comma-separated client networks (CIDR) accepted (default: any)")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		maxCompute  = fs.Duration("max-compute-time", 60*time.Second, "longest one graph may run; past it the connection's process is killed")
		grace       = fs.Duration("grace", 10*time.Second, "on SIGTERM, how long connections may finish their command before their processes are killed")
		maxHost     = fs.String("max-host-memory", "", "most host memory all connections may make the worker hold: CPU buffers, overheads, messages, graphs, processes (default: 75% of RAM or the cgroup limit)")
		maxBufs     = fs.Int("max-buffers-per-conn", 65536, "most buffers one connection may hold")
		maxConns    = fs.Int("max-conns", 512, "most open connections")
		maxPerPeer  = fs.Int("max-conns-per-peer", 64, "most open connections from one peer address")
		msgTimeout  = fs.Duration("message-timeout", 30*time.Second, "a message must arrive whole within this plus 1s per MiB, from its first byte")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: box worker [flags]\n\nA ggml RPC server (protocol 3.6.0): one compute process per connection, so the kernel frees what a connection held.")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s\n    \t%s", f.Name, f.Usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" {
				fmt.Fprintf(fs.Output(), " (default %s)", f.DefValue)
			}
			fmt.Fprintln(fs.Output())
		})
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "box worker:", err)
		return errUsage
	}
	cfg := worker.Config{Threads: *threads, CacheDir: *cacheDir, Keepalive: *keepalive, KeepaliveInterval: *kaInterval,
		IdleTimeout: *idleTimeout, MaxComputeTime: *maxCompute, Grace: *grace, DriverMemory: probe.ProcessGPUMemory,
		MaxBuffersPerConn: *maxBufs, MaxConns: *maxConns, MaxConnsPerPeer: *maxPerPeer, MessageTimeout: *msgTimeout}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "box worker: "+format+"\n", a...)
		return errUsage
	}
	if *devices != "" {
		cfg.Devices = strings.Split(*devices, ",")
	}
	if cfg.MaxMemory, err = parseSize(*maxMem); err != nil {
		return bad("--max-memory: %v", err)
	}
	if cfg.MaxMemoryPerConn, err = parseSize(*maxConn); err != nil {
		return bad("--max-memory-per-conn: %v", err)
	}
	if cfg.MaxHostMemory, err = parseSize(*maxHost); err != nil {
		return bad("--max-host-memory: %v", err)
	}
	if *maxBufs <= 0 || *maxConns <= 0 || *maxPerPeer <= 0 || *msgTimeout <= 0 {
		return bad("--max-buffers-per-conn, --max-conns, --max-conns-per-peer and --message-timeout must be positive")
	}
	if *keepalive <= 0 || *kaInterval <= 0 || *idleTimeout < 0 {
		return bad("--keepalive and --keepalive-interval must be positive, --idle-timeout not negative")
	}
	if *maxCompute <= 0 || *grace <= 0 {
		return bad("--max-compute-time and --grace must be positive")
	}
	if *threads < 0 {
		return bad("--threads must not be negative")
	}
	for _, s := range strings.Split(*allow, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return bad("--allow %q: want CIDR like 10.0.0.0/8", s)
		}
		cfg.Allow = append(cfg.Allow, p.Masked())
	}
	if host, _, err := net.SplitHostPort(*listen); err != nil {
		return bad("--listen %q: %v", *listen, err)
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Warn("listening beyond loopback: the RPC protocol has no authentication; restrict with --allow or a firewall", "listen", *listen)
	}

	w, err := worker.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := w.Listen(ctx, *listen)
	if err != nil {
		w.Close()
		return fmt.Errorf("listen: %w", err)
	}
	var adminSrv *http.Server
	if *admin != "" {
		aln, err := net.Listen("tcp", *admin)
		if err != nil {
			ln.Close()
			w.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		// The admin API, plus this node's probe view (NVML, host memory).
		mux := http.NewServeMux()
		mux.Handle("/", w.AdminHandler(version))
		mux.HandleFunc("GET /v1/probe", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			json.NewEncoder(rw).Encode(probe.Local(r.Context()))
		})
		adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go adminSrv.Serve(aln)
		log.Info("admin API listening", "url", "http://"+aln.Addr().String())
	}
	err = w.Serve(ctx, ln)
	if adminSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		adminSrv.Shutdown(sctx)
		cancel()
	}
	return err
}

// parseSize reads sizes like 512MiB, 4GiB, 1.5GB or a plain byte count.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := 1.0
	num := s
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			num = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			mult = u.mult
			break
		}
	}
	var v float64
	if _, err := fmt.Sscanf(num, "%g", &v); err != nil || v < 0 {
		return 0, errors.New("want a size like 512MiB, 4GiB or a byte count")
	}
	if v*mult >= 1<<63 {
		return 0, errors.New("size too large")
	}
	return uint64(v * mult), nil
}
