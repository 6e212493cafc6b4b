// Package compute is the process that serves one connection of box worker.
// The supervisor (package worker) accepts the client, answers its first
// device questions, then starts this process with the client's socket; the
// process speaks the RPC protocol with the client directly, owns the ggml
// backends and buffers of that connection and nothing else, and exits when
// the connection ends. The kernel and the device driver then free all of
// it, including whatever ggml or the driver itself would have leaked, and
// whatever the client did to this process cannot touch another one.
//
// Every field a client sends is still validated before ggml sees it
// (validate.go, opcheck.go, graph.go): isolation bounds the damage of what
// validation misses, validation keeps the common attacks from costing a
// process start.
package compute

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/worker/cache"
	"github.com/boxproj/box/worker/ctl"
)

// The files a compute process inherits, as the supervisor lays them out.
const (
	FDClient  = 3 // the client's TCP socket
	FDControl = 4 // the control socketpair
	FDPage    = 5 // the shared activity page (memfd)
)

// Exit codes. Anything else (a signal, a Go runtime failure) is a crash.
const (
	ExitOK       = 0
	ExitPanic    = 1  // a Go panic, caught; the end was reported
	ExitOrphaned = 3  // the supervisor went away
	ExitSetup    = 64 // bad descriptors or start message
)

// Main runs a compute process: "describe" prints the ggml devices as JSON
// on stdout; "serve" serves the inherited connection.
//
// Both see the ggml backend libraries of ggml.BackendsDir (the
// supervisor's environment, BOX_BACKENDS included, is theirs), so a
// serving process finds exactly the devices the describe run listed:
// describe loads them at once, a serving process when its client first
// opens a device that is not built in (conn.backend), so a connection
// that uses only the CPU never pays for a GPU runtime.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "describe" {
		libs := ggml.LoadBackends(ggml.BackendsDir())
		// What was loaded and skipped, for the supervisor's log.
		ggml.LogLibraries(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})), ggml.BackendsDir(), libs)
		return describe(stdout, stderr)
	}
	if len(args) == 1 && args[0] == "serve" {
		return Serve(stderr)
	}
	fmt.Fprintln(stderr, "box compute: internal command of box worker (describe | serve)")
	return ExitSetup
}

// describe lists accelerators (GPUs) first, then the CPU: a head puts a
// worker's layers on its first device, so a GPU worker serves from its GPU
// by default.
func describe(stdout, stderr io.Writer) int {
	var out []ctl.Device
	devs := ggml.Devices()
	slices.SortStableFunc(devs, func(a, b ggml.Device) int {
		return cmp.Compare(b2i(a.Type == "cpu"), b2i(b.Type == "cpu"))
	})
	for _, d := range devs {
		out = append(out, ctl.Device{Name: d.Name, Description: d.Description, Type: d.Type,
			Alignment: d.Alignment(), MaxSize: d.MaxSize(), MemoryFree: d.Free, MemoryTotal: d.Total})
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintln(stderr, "describe:", err)
		return ExitSetup
	}
	return ExitOK
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Serve serves the connection on the inherited descriptors and reports its
// end to the supervisor. It frees nothing: the caller exits.
func Serve(stderr io.Writer) (code int) {
	// The connection's buffers must go back to the system when freed (see
	// ggml.FixMmapThreshold): this process holds them all.
	ggml.FixMmapThreshold()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(log)
	ctlFile := os.NewFile(FDControl, "control")
	cc, err := net.FileConn(ctlFile)
	ctlFile.Close()
	if err != nil {
		fmt.Fprintln(stderr, "box compute: control socket:", err)
		return ExitSetup
	}
	sup := &supervisor{c: ctl.NewConn(cc), replies: make(chan ctl.Reply, 1)}
	var ini ctl.Init
	if err := sup.c.Recv(&ini); err != nil {
		fmt.Fprintln(stderr, "box compute: start message:", err)
		return ExitSetup
	}
	go sup.read()
	pageFile := os.NewFile(FDPage, "page")
	page, err := ctl.MapPage(pageFile)
	pageFile.Close()
	if err != nil {
		fmt.Fprintln(stderr, "box compute:", err)
		return ExitSetup
	}
	clientFile := os.NewFile(FDClient, "client")
	nc, err := net.FileConn(clientFile)
	clientFile.Close()
	if err != nil {
		fmt.Fprintln(stderr, "box compute: client socket:", err)
		return ExitSetup
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		ini.Keepalive.Apply(tc)
	}
	c := newConn(ini, sup, page, nc)
	if ini.CacheDir != "" {
		c.cache = cache.Open(ini.CacheDir, ini.CacheTenant, sup.cacheRoom, log)
	}

	// SIGTERM is the supervisor draining: end at the next command boundary.
	// (A command running in ggml finishes first; past --grace the
	// supervisor kills.)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		c.shutdown.Store(true)
		nc.Close()
	}()

	defer func() {
		// The panic guard ends in the same place as every other end: the
		// end message, then exit.
		if r := recover(); r != nil {
			sup.tell(ctl.Msg{Op: ctl.OpEnd, Reason: api.ReasonCrashed, Detail: fmt.Sprintf("panic: %v", r)})
			fmt.Fprintf(stderr, "panic: %v\n", r)
			code = ExitPanic
		}
	}()
	reason, detail := c.loop()
	nc.Close()
	sup.tell(ctl.Msg{Op: ctl.OpEnd, Reason: reason, Detail: detail, Violation: c.violationKind})
	return ExitOK
}

// supervisor is this process's side of the control channel. Only the
// connection's loop asks, one question at a time.
type supervisor struct {
	c       *ctl.Conn
	seq     atomic.Uint64
	replies chan ctl.Reply
}

// read delivers replies; when the supervisor is gone the process has no
// reason to live (nobody accounts its memory), so it exits at once.
func (s *supervisor) read() {
	for {
		var r ctl.Reply
		if err := s.c.Recv(&r); err != nil {
			os.Exit(ExitOrphaned)
		}
		s.replies <- r
	}
}

func (s *supervisor) tell(m ctl.Msg) error { return s.c.Send(m) }

// cacheRoom asks for room for a cache entry of n bytes.
func (s *supervisor) cacheRoom(n uint64) (func(), bool) {
	r, err := s.ask(ctl.Msg{Op: ctl.OpCacheRoom, Size: n})
	if err != nil || !r.OK {
		return nil, false
	}
	return func() { s.tell(ctl.Msg{Op: ctl.OpCacheDone, Seq: r.Seq}) }, true
}

// errSupervisor means the supervisor did not answer.
var errSupervisor = errors.New("supervisor did not answer")

func (s *supervisor) ask(m ctl.Msg) (ctl.Reply, error) {
	m.Seq = s.seq.Add(1)
	if err := s.c.Send(m); err != nil {
		return ctl.Reply{}, err
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case r := <-s.replies:
			if r.Seq == m.Seq {
				return r, nil
			}
		case <-t.C:
			return ctl.Reply{}, errSupervisor
		}
	}
}
