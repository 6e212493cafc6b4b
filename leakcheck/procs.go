package leakcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/boxproj/box/api"
)

// proc is a child process (a local worker or a head) with the tail of its
// log kept for error messages.
type proc struct {
	cmd  *exec.Cmd
	logs *tail
	done chan struct{}
	err  error // valid after done
}

func startProc(name string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	t := &tail{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = t, t
	// Children die with leakcheck, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, logs: t, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(s syscall.Signal) {
	if !p.exited() {
		p.cmd.Process.Signal(s)
	}
}

// wait waits up to d for the process to end.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill ends the process with SIGKILL and reaps it.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process with SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	p.signal(syscall.SIGTERM)
	if !p.wait(5 * time.Second) {
		p.kill()
	}
}

// exitDesc describes how a process ended, naming a SIGKILL nobody here sent
// (the OOM killer's way).
func (p *proc) exitDesc() string {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if ws.Signal() == syscall.SIGKILL {
				return "killed by SIGKILL (out of memory?)"
			}
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if p.err != nil {
		return p.err.Error()
	}
	return "exit status 0"
}

// lastLines is the end of the process's log, for error messages.
func (p *proc) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(p.logs.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// freePort asks the kernel for a free TCP port on host.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startWorker starts `box worker` on free ports of host (RPC) and loopback
// (admin API), retrying when a port was taken in between, and waits until
// both answer.
// startWorker starts a local box worker whose admin API takes token.
func startWorker(ctx context.Context, box, host, token string, extra []string, within time.Duration) (*workerRef, error) {
	var lastErr error
	for try := 0; try < 5; try++ {
		port, err := freePort(host)
		if err != nil {
			return nil, err
		}
		aport, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(aport))
		args := append([]string{"worker", "--listen", addr, "--admin", admin}, extra...)
		p, err := startProc(box, []string{api.TokenEnv + "=" + token}, args...)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(min(within, 30*time.Second))
		for {
			if p.exited() {
				lastErr = fmt.Errorf("box worker exited (%s): %s", p.exitDesc(), p.lastLines(3))
				break
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				if c, err := net.DialTimeout("tcp", admin, time.Second); err == nil {
					c.Close()
					return &workerRef{ep: api.Endpoint{Addr: addr, Admin: "http://" + admin}, local: p}, nil
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				p.kill()
				return nil, fmt.Errorf("box worker did not answer on %s: %s", addr, p.lastLines(3))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil, lastErr
}

// rpcList is the --rpc value for a head: every worker with its admin API.
func (r *runner) rpcList() string {
	var parts []string
	for _, w := range r.workers {
		s := w.ep.Addr
		if w.ep.Admin != "" {
			s += "@" + strings.TrimPrefix(w.ep.Admin, "http://")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// head is one `box serve` under test.
type head struct {
	*proc
	url string
}

// startHead starts a head for mode m serving model.
func (r *runner) startHead(m Mode, model string) (*head, error) {
	host, prefix := "127.0.0.1", []string(nil)
	port := 0
	if m == Vanish {
		host = r.ns.peerIP
		port = 18080 // the namespace's own port space is empty
		prefix = []string{"ip", "netns", "exec", r.ns.name}
	} else {
		var err error
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	listen := net.JoinHostPort(host, strconv.Itoa(port))
	args := []string{"serve", "--model", model, "--model-id", r.modelID}
	if model == demoModel {
		args = []string{"serve", "--demo", "--cache-dir", r.o.CacheDir}
	}
	args = append(args, "--listen", listen, "--rpc", r.rpcList(), "--no-local", "--parallel", "1", "--log-level", "warn")
	name := r.box
	if prefix != nil {
		name, args = prefix[0], append(append(prefix[1:], r.box), args...)
	}
	p, err := startProc(name, nil, args...)
	if err != nil {
		return nil, err
	}
	return &head{proc: p, url: "http://" + listen}, nil
}
