// Package hostmem reads what the host says about its memory: MemTotal and
// MemAvailable, and this process's cgroup v2 limit. It is a leaf so both
// the worker and the probe can use it.
package hostmem

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Read reads MemTotal and MemAvailable from root/proc/meminfo and, when
// this process's cgroup v2 has a memory.max other than "max", the limit and
// current usage from root/sys/fs/cgroup. root is "/" except in tests.
func Read(root string) (Host, error) {
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return Host{}, err
	}
	defer f.Close()
	var h Host
	var seen int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch name {
		case "MemTotal":
			dst = &h.MemTotal
		case "MemAvailable":
			dst = &h.MemAvailable
		default:
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return Host{}, fmt.Errorf("meminfo %s: %v", name, err)
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		*dst = v
		seen++
	}
	if err := sc.Err(); err != nil {
		return Host{}, err
	}
	if seen < 2 {
		return Host{}, errors.New("meminfo lacks MemTotal or MemAvailable")
	}
	h.Cgroup = cgroupMemory(root)
	return h, nil
}

// cgroupMemory returns the cgroup memory limit of this process, or nil
// when there is none (memory.max is "max", or v1's limit is the huge
// "unlimited" value). cgroup v2 is read first, then the v1 memory
// controller.
func cgroupMemory(root string) *Cgroup {
	rel, relV1 := "/", ""
	if b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				rel = strings.TrimSpace(p)
			}
			if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
				relV1 = strings.TrimSpace(f[2])
			}
		}
	}
	if cg := cgroupV2(root, rel); cg != nil {
		return cg
	}
	if relV1 != "" {
		return cgroupV1(root, relV1)
	}
	return nil
}

// cgroupV1 reads memory.limit_in_bytes and memory.usage_in_bytes.
func cgroupV1(root, rel string) *Cgroup {
	base := filepath.Join(root, "sys/fs/cgroup/memory")
	for _, dir := range []string{filepath.Join(base, rel), base} {
		b, err := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes"))
		if err != nil {
			continue
		}
		limit, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		// "Unlimited" is the largest page-aligned int64.
		if err != nil || limit >= 1<<62 {
			return nil
		}
		cg := &Cgroup{Path: rel, Limit: limit}
		if b, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes")); err == nil {
			cg.Current, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		}
		return cg
	}
	return nil
}

func cgroupV2(root, rel string) *Cgroup {
	base := filepath.Join(root, "sys/fs/cgroup")
	// Inside a container's cgroup namespace the path may not exist as
	// written; the namespace root then is the process's cgroup.
	for _, dir := range []string{filepath.Join(base, rel), base} {
		b, err := os.ReadFile(filepath.Join(dir, "memory.max"))
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return nil
		}
		limit, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil
		}
		cg := &Cgroup{Path: rel, Limit: limit}
		if b, err := os.ReadFile(filepath.Join(dir, "memory.current")); err == nil {
			cg.Current, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		}
		return cg
	}
	return nil
}

// Host is the machine's memory, from /proc/meminfo and cgroup v2.
type Host struct {
	MemTotal     uint64  `json:"mem_total"`
	MemAvailable uint64  `json:"mem_available"`
	Cgroup       *Cgroup `json:"cgroup,omitempty"`
}

// Cgroup is a cgroup memory limit and usage (v2 memory.max and
// memory.current, or v1 memory.limit_in_bytes and memory.usage_in_bytes).
type Cgroup struct {
	Path    string `json:"path"`
	Limit   uint64 `json:"limit"`
	Current uint64 `json:"current"`
}

// CPU narrows a CPU device's figures (ggml may count all RAM as free) to
// what the host says: free is at most MemAvailable, and under a cgroup
// limit total is at most the limit and free at most what is left of it.
func CPU(total, free uint64, h Host) (uint64, uint64) {
	if h.MemAvailable > 0 {
		free = min(free, h.MemAvailable)
	}
	if cg := h.Cgroup; cg != nil {
		total = min(total, cg.Limit)
		free = min(free, sub(cg.Limit, cg.Current))
	}
	return total, min(free, total)
}

func sub(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}
