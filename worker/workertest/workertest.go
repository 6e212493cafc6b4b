// Package workertest has helpers for tests that need a real box worker: one
// started in-process on a loopback port with its admin API (its compute
// processes are the test binary itself), and RPC clients that bind memory
// on it. It is for tests only, not for production.
//
// A test package that starts workers calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { workertest.Main(m) }
//
// The worker package's own tests cannot use it (import cycle); they have
// their own harness.
package workertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/compute/computetest"
)

// quiet discards the worker's log.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Worker is a real worker serving RPC on a loopback port, with its admin API
// on an httptest server.
type Worker struct {
	*worker.Worker
	Addr  string // RPC address, host:port
	Admin string // admin API base URL, http://host:port

	stopOnce sync.Once
	stop     func()
}

// Main runs the package's tests, or a compute process when the test binary
// was started as one.
func Main(m *testing.M) { computetest.Main(m) }

// MaybeRun is computetest.MaybeRun, for a TestMain that does more than
// m.Run: call it first.
func MaybeRun() { computetest.MaybeRun() }

// Command starts this test binary as a compute process, with a fault
// ("" for none, or computetest.LeakOnDisconnect), for a worker.Config made
// outside Start.
func Command(fault string) worker.Command {
	return worker.Command{Path: computetest.Executable(), Env: computetest.Env(fault)}
}

// Option changes how a test worker is started.
type Option func(*worker.Config, *[]string)

// LeakOnDisconnect makes the worker's compute processes outlive their
// connections, holding their memory: the bug the leak checker exists to
// catch.
func LeakOnDisconnect(_ *worker.Config, fault *[]string) {
	*fault = append(*fault, computetest.LeakOnDisconnect)
}

// Start runs a worker with cfg (Threads defaults to 1) until Stop or the end
// of the test.
func Start(t testing.TB, cfg worker.Config, opts ...Option) *Worker {
	t.Helper()
	if cfg.Threads == 0 {
		cfg.Threads = 1
	}
	var faults []string
	for _, o := range opts {
		o(&cfg, &faults)
	}
	fault := ""
	if len(faults) > 0 {
		fault = faults[0]
	}
	cfg.Compute = Command(fault)
	if cfg.Grace == 0 {
		cfg.Grace = 2 * time.Second // a leaking process is killed after this at Stop
	}
	w, err := worker.New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := w.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Serve(ctx, ln) }()
	adm := httptest.NewServer(w.AdminHandler("test"))
	tw := &Worker{Worker: w, Addr: ln.Addr().String(), Admin: adm.URL}
	tw.stop = func() {
		// Close admin clients' connections first, so that a poller's
		// keep-alive connection cannot hold up the admin server's Close.
		adm.CloseClientConnections()
		adm.Close()
		cancel()
		<-done
	}
	t.Cleanup(tw.Stop)
	return tw
}

// Stop shuts the admin API and the worker down, and waits for the worker to
// free everything. It may be called more than once; the test's cleanup calls
// it too.
func (w *Worker) Stop() { w.stopOnce.Do(w.stop) }

// Dial connects an RPC client (HELLO done) to addr within 5 seconds; it is
// closed at the end of the test.
func Dial(t testing.TB, addr string) *rpc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Alloc binds a buffer of size bytes on device 0 through c and returns its
// handle; the test fails if the worker refuses.
func Alloc(t testing.TB, c *rpc.Client, size uint64) uint64 {
	t.Helper()
	h, _, err := c.AllocBuffer(context.Background(), 0, size)
	if err != nil || h == 0 {
		t.Fatalf("alloc %d: handle %d, %v", size, h, err)
	}
	return h
}

// StartProcess starts cmd (a box process a test runs) and stops it at the
// end of the test: SIGTERM, then SIGKILL after 10 s, and waits for it.
func StartProcess(t testing.TB, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// FreeAddr is a loopback address nothing listens on (the port was free a
// moment ago): a dead node, or an address to start a worker on later.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
