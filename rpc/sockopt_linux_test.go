//go:build linux

package rpc

import (
	"net"
	"syscall"
	"testing"
	"time"
)

func sockopts(t *testing.T, c *Client) map[string]int {
	t.Helper()
	raw, err := c.conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	raw.Control(func(fd uintptr) {
		for name, opt := range map[string][2]int{
			"nodelay":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
			"keepalive": {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
			"idle":      {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
			"interval":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
			"count":     {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		} {
			v, err := syscall.GetsockoptInt(int(fd), opt[0], opt[1])
			if err != nil {
				t.Errorf("getsockopt %s: %v", name, err)
			}
			got[name] = v
		}
	})
	return got
}

func TestDialSocketOptions(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	c := dialWorker(t, w)
	got := sockopts(t, c)
	if got["nodelay"] == 0 || got["keepalive"] == 0 || got["idle"] != 10 || got["interval"] != 5 || got["count"] != 3 {
		t.Errorf("default socket options %v", got)
	}

	c2 := dialWorker(t, w, WithKeepAlive(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 7 * time.Second, Count: 9}), WithBufferSize(4096))
	got = sockopts(t, c2)
	if got["keepalive"] == 0 || got["idle"] != 30 || got["interval"] != 7 || got["count"] != 9 {
		t.Errorf("custom keepalive %v", got)
	}
	if err := c2.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	c3 := dialWorker(t, w, WithKeepAlive(net.KeepAliveConfig{Enable: false}))
	if got = sockopts(t, c3); got["keepalive"] != 0 {
		t.Errorf("keepalive not disabled: %v", got)
	}
}
