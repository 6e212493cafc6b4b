package worker

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/boxproj/box/api"
)

// Validate refuses limits the worker cannot run with, in the words of box
// worker's flags (a usage error there).
func (cfg Config) Validate() error {
	switch {
	case cfg.MaxBuffersPerConn <= 0 || cfg.MaxConns <= 0 || cfg.MaxConnsPerPeer <= 0 || cfg.MessageTimeout <= 0:
		return errors.New("--max-buffers-per-conn, --max-conns, --max-conns-per-peer and --message-timeout must be positive")
	case cfg.Keepalive <= 0 || cfg.KeepaliveInterval <= 0 || cfg.IdleTimeout < 0:
		return errors.New("--keepalive and --keepalive-interval must be positive, --idle-timeout not negative")
	case cfg.MaxComputeTime <= 0 || cfg.Grace <= 0:
		return errors.New("--max-compute-time and --grace must be positive")
	case cfg.Threads < 0:
		return errors.New("--threads must not be negative")
	}
	return nil
}

// ParseAllow reads an --allow list of client networks ("10.0.0.0/8,...").
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: want CIDR like 10.0.0.0/8", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Quotas are the limits the worker enforces in force, as log attributes
// for its start line: the per-device limit is the device's size where
// --max-memory is not smaller.
func (w *Worker) Quotas() []any {
	cfg := w.Config()
	size := func(n uint64, none string) string {
		if n == 0 {
			return none
		}
		return api.HumanBytes(n)
	}
	var devs []string
	for _, d := range w.Node("").Devices {
		devs = append(devs, d.Name+" "+size(min(d.MemoryTotal, cmp.Or(cfg.MaxMemory, d.MemoryTotal)), "0 B"))
	}
	return []any{"max_memory", strings.Join(devs, ", "), "max_memory_per_conn", size(cfg.MaxMemoryPerConn, "none"),
		"max_host_memory", size(cfg.MaxHostMemory, "none"), "max_buffers_per_conn", cfg.MaxBuffersPerConn,
		"max_conns", cfg.MaxConns, "max_conns_per_peer", cfg.MaxConnsPerPeer, "message_timeout", cfg.MessageTimeout,
		"max_compute_time", cfg.MaxComputeTime, "grace", cfg.Grace}
}
