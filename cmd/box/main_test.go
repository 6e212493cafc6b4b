package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker/compute/computetest"
	"github.com/boxproj/box/worker/workertest"
)

// The test binary is box itself when BOX_E2E_MAIN is set, so these tests
// run real box processes and send them real signals. A worker started that
// way starts its compute processes the same way; they take the test fault
// from the environment (package computetest), which the shipped binary
// does not know. In-process test workers use workertest's compute process.
func TestMain(m *testing.M) {
	if os.Getenv("BOX_E2E_MAIN") == "1" {
		if len(os.Args) > 1 && os.Args[1] == "__compute" {
			os.Exit(computetest.Run(os.Args[2:]))
		}
		os.Exit(run(append([]string{"box"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	// Every box these tests start keeps its state (the workers' admin
	// token) here, not in the machine's state dir.
	state, err := os.MkdirTemp("", "box-state")
	if err != nil {
		panic(err)
	}
	os.Setenv(api.StateDirEnv, state)
	workertest.MaybeRun()
	code := m.Run()
	os.RemoveAll(state)
	os.Exit(code)
}

func box(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BOX_E2E_MAIN=1")
	return cmd
}

func TestServeRefusesBadModelInOneLine(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := synth.Preset("tiny")
	good := filepath.Join(dir, "tiny.gguf")
	if err := synth.Write(context.Background(), good, cfg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.gguf")
	os.WriteFile(trunc, b[:len(b)/3], 0o644)
	for _, path := range []string{filepath.Join(dir, "nonexistent.gguf"), trunc} {
		var stderr bytes.Buffer
		cmd := box("serve", "--model", path, "--listen", "127.0.0.1:0")
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s: exit %v", path, err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], path) {
			t.Fatalf("%s: want one line naming the file, got:\n%s", path, stderr.String())
		}
	}
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"serve"},
		{"serve", "--demo", "--parallel", "0"},
		{"serve", "--demo", "--tensor-split", "1,x", "--rpc", "127.0.0.1:1"},
		{"worker", "--max-memory", "lots"},
		{"worker", "--allow", "10.0.0.0"},
		{"nonsense"},
	} {
		err := box(args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("box %v: exit %v, want 2", args, err)
		}
	}
}

func TestWorkerSIGTERMFreesEverythingAndExitsZero(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	cmd := box("worker", "--listen", addr, "--admin", "", "--threads", "1", "--max-memory", "1GiB", "--max-memory-per-conn", "64MB")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var log bytes.Buffer
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
	}()
	var c *rpc.Client
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if c, err = rpc.Dial(context.Background(), addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		if h, _, err := c.AllocBuffer(context.Background(), 0, 4<<20); err != nil || h == 0 {
			t.Fatalf("alloc: %v", err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	// Its stderr ends when it exits; Wait only after reading all of it,
	// since Wait closes the pipe (a line still in it would be lost).
	select {
	case <-logDone:
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop on SIGTERM")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(log.String(), "bytes_freed=8388608") {
		t.Fatalf("log does not report the bytes freed:\n%s", log.String())
	}
	// The effective quotas, in one line at start.
	if !regexp.MustCompile(`msg=quotas max_memory="CPU 1.0 GiB" max_memory_per_conn="61.0 MiB" max_host_memory=.* max_compute_time=1m0s grace=10s`).MatchString(log.String()) {
		t.Fatalf("log does not report the quotas:\n%s", log.String())
	}
	if _, err := c.DeviceCount(context.Background()); err == nil {
		t.Fatal("connection still open after the worker stopped")
	}
}

// freePort finds a free loopback port.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// startBox runs a long-lived box process and stops it at cleanup.
func startBox(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return startCmd(t, box(args...))
}

// startCmd starts a box process made with box(), stopped (SIGTERM, then
// SIGKILL after 10s) at the end of the test.
func startCmd(t *testing.T, cmd *exec.Cmd) *exec.Cmd { return workertest.StartProcess(t, cmd) }

// adminRequest is a request with the workers' admin token that the box
// processes of these tests made in the test state dir.
func adminRequest(ctx context.Context, method, url string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	if tok, _ := api.ClientToken("", api.DefaultTokenFile()); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// adminGet is GET url with the admin token.
func adminGet(url string) (*http.Response, error) {
	return http.DefaultClient.Do(adminRequest(context.Background(), "GET", url))
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := adminGet(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The demo cluster as real processes: two workers and a head; boxtop --once
// shows both workers, the bytes bound there and the head's connection with
// its buffers.
func TestDemoClusterSeenByBoxtop(t *testing.T) {
	cache := t.TempDir()
	var rpcs, admins []string
	for i := 0; i < 2; i++ {
		p := freePort(t)
		a := freePort(t)
		rpcs = append(rpcs, "127.0.0.1:"+p)
		admins = append(admins, "127.0.0.1:"+a)
		startBox(t, "worker", "--listen", rpcs[i], "--admin", admins[i], "--threads", "1")
		waitHTTP(t, "http://"+admins[i]+"/v1/node")
	}
	head := "127.0.0.1:" + freePort(t)
	startBox(t, "serve", "--demo", "--cache-dir", cache, "--listen", head, "--no-local", "--threads", "1",
		"--rpc", rpcs[0]+"@"+admins[0]+","+rpcs[1]+"@"+admins[1])
	waitHTTP(t, "http://"+head+"/health")

	resp, err := http.Post("http://"+head+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"box-demo","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("chat through the demo cluster: %v %v", resp, err)
	}
	resp.Body.Close()

	// box chat streams an answer through the same API.
	chat := box("chat", "--url", "http://"+head, "--max-tokens", "8", "hello")
	answer, err := chat.Output()
	if err != nil || len(bytes.TrimSpace(answer)) == 0 {
		t.Fatalf("box chat: %v, answer %q", err, answer)
	}

	var out bytes.Buffer
	top := box("top", "--head", "http://"+head, "--once", "--width", "120")
	top.Stdout = &out
	top.Stderr = &out
	if err := top.Run(); err != nil {
		t.Fatalf("boxtop --once: %v\n%s", err, out.String())
	}
	frame := out.String()
	for _, want := range append(append([]string{}, rpcs...), "serving") {
		if !strings.Contains(frame, strings.Split(want, "@")[0]) {
			t.Fatalf("boxtop frame lacks %q:\n%s", want, frame)
		}
	}
	t.Logf("boxtop --once:\n%s", frame)
}
