package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/probe/local"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
)

func newWorker() *cobra.Command {
	var (
		cfg                               = worker.Config{DriverMemory: local.ProcessGPUMemory}
		listen, admin, devices, allow, lv string
		maxMem, maxConn, maxHost          = probe.NewSize(""), probe.NewSize(""), probe.NewSize("")
		cacheMax                          = probe.NewSize("")
		token, tokenFile, adminHosts      string
		readOpen                          bool
		protocol                          string
	)
	c := &cobra.Command{
		Use:   "worker [flags]",
		Short: "Run a ggml RPC worker (protocols 3.6.0 and 7.0.0) that frees what each connection held",
		Long: "A ggml RPC server, wire-compatible with llama.cpp's rpc-server: one compute process per connection, so\n" +
			"the kernel frees what a connection held when it ends. Quotas bound the memory; the admin API shows\n" +
			"connections and buffers. Sizes are " + probe.SizeUnits + ".",
		Example: "  box worker\n  box worker --listen 0.0.0.0:50052 --allow 10.0.0.0/8 --max-memory 20GiB --cache /var/cache/box",
		Args:    noArgs,
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:50052", "RPC address (loopback by default; any other address must be given explicitly)")
	f.StringVar(&admin, "admin", "127.0.0.1:50053", "admin HTTP address (empty to disable)")
	f.StringVar(&devices, "device", "", "comma-separated ggml devices to expose (default: all)")
	f.IntVar(&cfg.Threads, "threads", 0, "compute threads (default: all CPUs)")
	f.StringVar(&cfg.CacheDir, "cache", "", "directory for the tensor cache (SET_TENSOR_HASH); off when empty")
	f.Var(maxMem, "max-memory", "most bytes bound per device, e.g. 4GiB (default: the device's size)")
	f.Var(maxConn, "max-memory-per-conn", "most bytes one connection may hold (default: no limit)")
	f.DurationVar(&cfg.Keepalive, "keepalive", 10*time.Second, "TCP keepalive idle time; probes every --keepalive-interval, 3 of them")
	f.DurationVar(&cfg.KeepaliveInterval, "keepalive-interval", 5*time.Second, "TCP keepalive probe interval")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "reap connections silent for longer (0 = off: an idle head with a loaded model is legitimate)")
	f.StringVar(&allow, "allow", "", "comma-separated client networks (CIDR) accepted (default: any)")
	f.StringVar(&lv, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.MaxComputeTime, "max-compute-time", 60*time.Second, "longest one graph may run; past it the connection's process is killed")
	f.DurationVar(&cfg.Grace, "grace", 10*time.Second, "on SIGTERM, how long connections may finish their command before their processes are killed")
	f.Var(maxHost, "max-host-memory", "most host memory all connections may make the worker hold: CPU buffers, overheads, messages, graphs, processes (default: 75% of RAM or the cgroup limit)")
	f.IntVar(&cfg.MaxBuffersPerConn, "max-buffers-per-conn", 65536, "most buffers one connection may hold")
	f.IntVar(&cfg.MaxConns, "max-conns", 512, "most open connections")
	f.IntVar(&cfg.MaxConnsPerPeer, "max-conns-per-peer", 64, "most open connections from one peer address")
	f.DurationVar(&cfg.MessageTimeout, "message-timeout", 30*time.Second, "a message must arrive whole within this plus 1s per MiB, from its first byte")
	f.Var(cacheMax, "cache-max-size", "most bytes the tensor cache keeps; least recently used entries go first (default: 20% of its filesystem)")
	f.BoolVar(&cfg.CacheShared, "cache-shared", false, "serve cache entries to every client (default: only to the network address that wrote them)")
	f.StringVar(&token, "admin-token", "", "the admin API's token (default: $"+api.TokenEnv+", else --admin-token-file)")
	f.StringVar(&tokenFile, "admin-token-file", api.DefaultTokenFile(), "file holding the admin token; created (mode 0600) on first start")
	f.StringVar(&adminHosts, "admin-host", "", "comma-separated host names the admin API may be reached by (IP addresses and localhost always may)")
	f.BoolVar(&readOpen, "admin-read-open", false, "let GET requests (/metrics, /v1/node, ...) through without the token")
	f.StringVar(&protocol, "protocol", "7", "the version a 4.0-or-newer client is served at: 7, 6, 5 (5.1.0), 5.0.0, 5.0.1, 4 (4.0.4) or 4.0.0-4.0.3; 3.6.1 sets what a 3.6 (empty) HELLO gets instead of 3.6.0")
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg.Devices, cfg.MaxMemory, cfg.MaxMemoryPerConn, cfg.MaxHostMemory = splitList(devices), maxMem.Bytes, maxConn.Bytes, maxHost.Bytes
		cfg.CacheMaxSize = cacheMax.Bytes
		pv, err := rpc.ParseVersion(protocol)
		if err != nil {
			return usagef("--protocol: %v", err)
		}
		if pv.Caps() {
			cfg.Protocol = pv
		} else {
			cfg.Legacy = pv
		}
		if err := cfg.Validate(); err != nil {
			return usageError{err}
		}
		if cfg.Allow, err = worker.ParseAllow(splitList(allow)); err != nil {
			return usageError{err}
		}
		log, err := newLogger(c.ErrOrStderr(), lv)
		if err != nil {
			return err
		}
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return usagef("--listen %q: %v", listen, err)
		} else if !api.IsLoopback(listen) {
			log.Warn("listening beyond loopback: the RPC protocol has no authentication; restrict with --allow or a firewall", "listen", listen)
		}
		w, err := worker.New(cfg, log)
		if err != nil {
			return err
		}
		log.Info("quotas", w.Quotas()...)
		ln, err := w.Listen(c.Context(), listen)
		if err != nil {
			w.Close()
			return fmt.Errorf("listen: %w", err)
		}
		if admin != "" {
			if _, _, err := net.SplitHostPort(admin); err != nil {
				return usagef("--admin %q: %v", admin, err)
			} else if !api.IsLoopback(admin) {
				log.Warn("admin API beyond loopback: restrict it with --allow or a firewall; it needs the admin token", "admin", admin)
			}
			tok, created, err := api.ServerToken(token, tokenFile)
			if err != nil {
				return err
			}
			if created {
				log.Info("admin token created", "file", tokenFile)
			}
			guard := worker.AdminGuard{Token: tok, ReadOpen: readOpen, Hosts: splitList(adminHosts), Allow: cfg.Allow}
			aln, err := net.Listen("tcp", admin)
			if err != nil {
				ln.Close()
				w.Close()
				return fmt.Errorf("admin listen: %w", err)
			}
			// The admin API, plus this node's probe view (NVML, host memory).
			defer w.ServeAdmin(aln, version, guard, map[string]http.HandlerFunc{"GET /v1/probe": local.Handler})()
			log.Info("admin API listening", "url", "http://"+aln.Addr().String())
		}
		return w.Serve(c.Context(), ln)
	}
	return c
}
