package serve

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// liar is a TCP proxy in front of a real worker that rewrites the answer to
// one command while lies > 0 (one lie per connection), then is honest.
// While stall is set it holds every answer back, as a stopped worker would.
type liar struct {
	ln       net.Listener
	upstream string
	cmd      rpc.Cmd
	rewrite  func(resp []byte)
	lies     atomic.Int32
	told     atomic.Int32 // lies told
	stall    atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startLiar(t *testing.T, upstream string, cmd rpc.Cmd, rewrite func([]byte)) *liar {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{ln: ln, upstream: upstream, cmd: cmd, rewrite: rewrite}
	l.lies.Store(1)
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

func (l *liar) addr() string { return l.ln.Addr().String() }

func (l *liar) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.upstream)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, c, up)
		l.mu.Unlock()
		lie := l.lies.Add(-1) >= 0
		pending := make(chan rpc.Cmd, 1024)
		l.wg.Add(2)
		go func() { // requests, forwarded as they are
			defer l.wg.Done()
			defer up.Close()
			defer close(pending)
			br, bw := bufio.NewReader(c), bufio.NewWriter(up)
			for {
				cmd, size, err := rpc.ReadRequestHeader(br)
				if err != nil {
					return
				}
				if cmd.HasResponse() {
					pending <- cmd
				}
				bw.Write(rpc.AppendRequestHeader(nil, cmd, size))
				if _, err := io.CopyN(bw, br, int64(size)); err != nil || bw.Flush() != nil {
					return
				}
			}
		}()
		go func() { // answers, one of them rewritten
			defer l.wg.Done()
			defer c.Close()
			br := bufio.NewReader(up)
			for cmd := range pending {
				if l.stall.Load() {
					for range pending {
					}
					return
				}
				n, err := rpc.ReadResponseHeader(br)
				if err != nil {
					return
				}
				resp := make([]byte, n)
				if _, err := io.ReadFull(br, resp); err != nil {
					return
				}
				if lie && cmd == l.cmd {
					l.rewrite(resp)
					l.told.Add(1)
					lie = false
				}
				if rpc.WriteResponse(c, resp) != nil {
					return
				}
			}
		}()
	}
}

// Each way a worker can lie about memory fails that worker, with a clear
// error naming it; the head stays up (ggml would have asserted), answers
// 503 naming it, and with --reconnect serves once the worker is honest.
func TestLyingWorker(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name    string
		cmd     rpc.Cmd
		rewrite func([]byte)
		want    string
	}{
		{"alignment 3", rpc.CmdGetAlignment, func(b []byte) { le.PutUint64(b, 3) }, "alignment 3 is not a power of two"},
		{"smaller allocation", rpc.CmdAllocBuffer, func(b []byte) { le.PutUint64(b[8:], le.Uint64(b[8:])/2) }, "the worker says it allocated"},
		{"null base", rpc.CmdBufferGetBase, func(b []byte) { le.PutUint64(b, 0) }, "base address 0x0"},
		{"unaligned base", rpc.CmdBufferGetBase, func(b []byte) { le.PutUint64(b, le.Uint64(b)+3) }, "not a multiple of the alignment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Only the CPU: an in-process worker would otherwise also
			// expose the remote devices this process's heads registered.
			w := workertest.Start(t, worker.Config{Devices: []string{"CPU"}})
			l := startLiar(t, w.Addr, tc.cmd, tc.rewrite)
			ts := startNoWait(t, Config{Workers: eps(l.addr()), NoLocal: true, Reconnect: true})

			// Degraded, naming the worker and the lie; requests get 503.
			var last string
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, body := get(t, ts.url+"/health")
				if code == 503 && strings.Contains(body, "degraded") && strings.Contains(body, l.addr()) && strings.Contains(body, tc.want) {
					break
				}
				if body != last {
					t.Logf("health %d: %s", code, strings.TrimSpace(body))
					last = body
				}
				select {
				case err := <-ts.done:
					ts.done <- err
					t.Fatalf("the head stopped: %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("not degraded with %q in 10s", tc.want)
				}
				time.Sleep(5 * time.Millisecond)
			}
			status, _, _, msg := postErrMsg(t, ts.url+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`)
			if status != 503 || !strings.Contains(msg, l.addr()) {
				t.Fatalf("request while the worker lies: status %d, %q", status, msg)
			}
			_, body := get(t, ts.url+"/health")
			t.Logf("health: %s", strings.TrimSpace(body))
			if l.told.Load() != 1 {
				t.Fatalf("%d lies told", l.told.Load())
			}
			// The liar is honest from its next connection on.
			ts.waitReady(t)
			if got := answer(t, ts, "hello"); got == "" {
				t.Fatal("no answer after the worker became honest")
			}
			if up := ts.cl.Uploads(); len(up) != 1 || up[0].UploadedBytes < 1<<20 || up[0].PlacedBytes == 0 {
				t.Fatalf("uploads %+v", up)
			}
		})
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
