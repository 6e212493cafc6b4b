package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
)

// waitRPC waits until a worker answers HELLO at addr.
func waitRPC(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := rpc.Dial(context.Background(), addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s never answered: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func greedy(t *testing.T, head string) string {
	t.Helper()
	resp, err := http.Post(head+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"box-demo","max_tokens":24,"temperature":0,"messages":[{"role":"user","content":"tell me"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || len(out.Choices) != 1 {
		t.Fatalf("greedy answer: %d %s", resp.StatusCode, b)
	}
	return out.Choices[0].Message.Content
}

func health(head string) (int, string) {
	resp, err := http.Get(head + "/health")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				parent[pp] = append(parent[pp], p)
			}
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range parent[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// startWorkerGroup runs a box worker in a process group of its own, so
// that a signal reaches it and its compute processes alike.
func startWorkerGroup(t *testing.T, addr string) *exec.Cmd {
	t.Helper()
	cmd := box("worker", "--listen", addr, "--admin", "", "--threads", "1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	waitRPC(t, addr)
	return cmd
}

// A stopped worker (SIGSTOP of its process group, as a frozen host: its
// kernel still ACKs, so TCP keepalive sees nothing) is declared failed
// within 10 s by the liveness probe: the stream in flight ends with an
// error naming it, /health says degraded, a new request gets 503 at once;
// after SIGCONT, --reconnect brings the head back with the same greedy text.
func TestServeStoppedWorker(t *testing.T) {
	var rpcs []string
	var workers []*exec.Cmd
	for i := 0; i < 2; i++ {
		addr := "127.0.0.1:" + freePort(t)
		rpcs = append(rpcs, addr)
		workers = append(workers, startWorkerGroup(t, addr))
	}
	victim, vaddr := workers[1], rpcs[1]
	// The worker and its compute processes (each in a process group of its
	// own), as a frozen host would stop them.
	signal := func(sig syscall.Signal) {
		for _, pid := range append(descendants(victim.Process.Pid), victim.Process.Pid) {
			syscall.Kill(pid, sig)
		}
	}
	head := "http://127.0.0.1:" + freePort(t)
	startBox(t, "serve", "--demo", "--cache-dir", t.TempDir(), "--listen", strings.TrimPrefix(head, "http://"),
		"--no-local", "--threads", "1", "--ctx-size", "2048", "--reconnect", "--rpc", strings.Join(rpcs, ","))
	waitHTTP(t, head+"/health")
	before := greedy(t, head)

	// A long stream, under way.
	resp, err := http.Post(head+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"box-demo","stream":true,"max_tokens":2000,"temperature":0,"messages":[{"role":"user","content":"a long answer"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for chunks := 0; chunks < 3; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream before the stop: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			chunks++
		}
	}
	signal(syscall.SIGSTOP)
	stopped := time.Now()

	// The stream ends with an error naming the worker.
	streamErr := make(chan string, 1)
	go func() {
		var last string
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "data: ") {
				last = line
			}
			if err != nil || strings.Contains(line, `"error"`) || strings.Contains(line, "[DONE]") {
				streamErr <- last
				return
			}
		}
	}()
	select {
	case last := <-streamErr:
		took := time.Since(stopped)
		if !strings.Contains(last, `"error"`) || !strings.Contains(last, vaddr) {
			t.Fatalf("stream ended after %v without an error naming %s: %s", took, vaddr, last)
		}
		t.Logf("stream ended %v after SIGSTOP: %s", took.Round(time.Millisecond), strings.TrimSpace(last))
		if took > 10*time.Second {
			t.Errorf("the stream took %v to end", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream did not end within 15 s of SIGSTOP")
	}

	// /health is degraded, naming the worker, within 10 s.
	for {
		code, body := health(head)
		if code == 503 && strings.Contains(body, "degraded") && strings.Contains(body, vaddr) {
			t.Logf("degraded %v after SIGSTOP: %s", time.Since(stopped).Round(time.Millisecond), strings.TrimSpace(body))
			break
		}
		if time.Since(stopped) > 10*time.Second {
			t.Fatalf("not degraded 10 s after SIGSTOP: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A new request is answered at once.
	t0 := time.Now()
	r2, err := http.Post(head+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"box-demo","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if took := time.Since(t0); r2.StatusCode != 503 || !strings.Contains(string(b), vaddr) || took > time.Second {
		t.Fatalf("request while degraded: %d after %v: %s", r2.StatusCode, took, b)
	}

	// SIGCONT, and --reconnect recovers: ok, and the same greedy text.
	signal(syscall.SIGCONT)
	cont := time.Now()
	for {
		code, body := health(head)
		if code == 200 {
			break
		}
		if time.Since(cont) > 30*time.Second {
			t.Fatalf("not ok 30 s after SIGCONT: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ok again %v after SIGCONT", time.Since(cont).Round(time.Millisecond))
	if after := greedy(t, head); after != before {
		t.Fatalf("after recovery %q, before %q", after, before)
	}
}
