package serve

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// A stop while a worker call is stalled does not wait for that call (nor
// for the liveness probe, set to a minute here): the grace period ends,
// requests are cancelled, the worker sockets are closed, and Run returns
// with everything freed on the worker.
func TestShutdownInterruptsStalledWorker(t *testing.T) {
	w := workertest.Start(t, worker.Config{Devices: []string{"CPU"}})
	l := startLiar(t, w.Addr, rpc.CmdNone, nil)
	l.lies.Store(0)
	ts := start(t, Config{Workers: eps(l.addr()), NoLocal: true, Grace: 300 * time.Millisecond, Heartbeat: time.Minute},
		slowHook(5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, br := openStream(t, ctx, ts.url, 200)
	defer resp.Body.Close()
	l.stall.Store(true)
	time.Sleep(100 * time.Millisecond) // the generation is now waiting on the worker

	// A scrape asks every device for its memory; it does not wait behind the
	// stalled call (it would until the liveness probe, set to a minute here).
	hc := &http.Client{Timeout: 10 * time.Second}
	mresp, err := hc.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatalf("/metrics while a worker call is stalled: %v", err)
	}
	mresp.Body.Close()

	t0 := time.Now()
	ts.stop()
	select {
	case err := <-ts.done:
		ts.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after the stop: a stalled worker call held it")
	}
	took := time.Since(t0)
	t.Logf("stopped %v after the signal, with a worker call stalled", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("stop took %v with a 300ms grace", took)
	}
	io.Copy(io.Discard, br)
	waitFor(t, func() bool { return w.BoundBytes() == 0 })
}
