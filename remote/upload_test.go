package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// commands reads how many cmd commands a test worker has executed.
func commands(t *testing.T, w *workertest.Worker, cmd string) int {
	t.Helper()
	resp, err := http.Get(w.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^box_worker_command_seconds_count\{cmd="%s"\} (\d+)`, cmd)).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// uploadModel writes the upload tests' model (4 layers, about 39 MB) and
// returns its path.
func uploadModel(t *testing.T) string {
	t.Helper()
	cfg, _ := synth.Preset("tiny")
	cfg.Layers, cfg.Embd, cfg.Heads, cfg.KVHeads, cfg.FF = 4, 512, 8, 4, 1024
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A model loaded through an Upload is sent from the head's own mapping of
// the file, off the loader's thread, and generates what a local load does.
func TestUploadSendsFromTheFile(t *testing.T) {
	path := uploadModel(t)
	local := generate(t, path, llama.ModelParams{}, 128, 2, 16)

	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	var nodes []*remote.Node
	for _, w := range []*workertest.Worker{w1, w2} {
		n, err := remote.Connect(context.Background(), w.Addr, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	up, err := remote.StartUpload(path, nodes, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Wait()
	if _, err := remote.StartUpload(path, nodes[:1], quiet); err == nil {
		t.Fatal("a node was put in two uploads at once")
	}
	check := func() error {
		up.Wait()
		return errors.Join(nodes[0].Err(), nodes[1].Err())
	}
	// Once loaded (the upload sends to both nodes at once), the head's
	// commands go one at a time.
	var before []remote.CallStats
	var t0 time.Time
	split := generateAfter(t, path, llama.ModelParams{Devices: []string{nodes[0].Devices()[0].Name, nodes[1].Devices()[0].Name},
		GPULayers: -1, TensorSplit: []float32{1, 1}, Check: check}, 128, 2, 16, func() {
		before, t0 = []remote.CallStats{nodes[0].Stats(), nodes[1].Stats()}, time.Now()
	})
	wall := time.Since(t0)
	if fmt.Sprint(split) != fmt.Sprint(local) {
		t.Fatalf("split %v\nlocal %v", split, local)
	}
	// Every generated token computed a graph on each node, and the
	// accounts of the nodes' time fit in the wall time of the whole run.
	var all time.Duration
	for i, n := range nodes {
		s := n.Stats().Sub(before[i])
		if s.Computes < int64(len(split)) || s.Calls <= s.Computes || s.ComputeTime <= 0 || s.Serialize <= 0 ||
			s.OtherCallTime() <= 0 || s.OtherCallTime() > s.CallTime {
			t.Errorf("node %d after %d tokens: %+v, other call time %v", i, len(split), s, s.OtherCallTime())
		}
		all += s.ComputeTime + s.OtherCallTime() + s.Serialize
	}
	if all > wall {
		t.Errorf("the nodes account for %v of a %v run", all, wall)
	}
	var sent int64
	for _, n := range nodes {
		if n.Uploaded() == 0 {
			t.Fatalf("nothing sent to %s", n.Addr)
		}
		sent += n.Uploaded()
	}
	// Everything but what is not in the file (the KV cache's clear, if
	// sent as bytes) came from the queue.
	if q := up.Queued(); q == 0 || q > sent || float64(q) < 0.9*float64(sent) {
		t.Fatalf("%d of %d bytes sent from the file", q, sent)
	}
	// After Wait the nodes are out of the upload: another may start.
	up2, err := remote.StartUpload(path, nodes, quiet)
	if err != nil {
		t.Fatalf("after Wait: %v", err)
	}
	up2.Wait()
}

// A worker without a cache misses every hash it is offered: once it has
// missed a few in a row the head stops offering them on that connection,
// even when its memo knows every hash (a head restarted with its memo
// against workers that lost their cache).
func TestNoOffersToAWorkerThatKeepsMissing(t *testing.T) {
	cfg, _ := synth.Preset("tiny")
	cfg.Layers, cfg.Embd, cfg.Heads, cfg.KVHeads, cfg.FF = 4, 512, 8, 4, 1024 // F32: 3 feed-forward matrices of 2 MiB a layer
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.SetHashMemo("")
	remote.SetHashMemo("")
	w := workertest.Start(t, worker.Config{})
	load := func() {
		n, err := remote.Connect(context.Background(), w.Addr, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		generate(t, path, llama.ModelParams{Devices: []string{n.Devices()[0].Name}, GPULayers: -1, Check: n.Err}, 128, 1, 2)
		if err := n.Err(); err != nil {
			t.Fatal(err)
		}
	}
	load()
	first := commands(t, w, "SET_TENSOR_HASH")
	if first != 1 {
		t.Fatalf("first load: %d hash offers, want 1 (the probe)", first)
	}
	remote.HashFileInBackground(path, quiet)
	remote.WaitHashing()
	load() // the memo now knows all 12 matrices
	if got := commands(t, w, "SET_TENSOR_HASH") - first; got != 3 {
		t.Fatalf("second load: %d hash offers, want 3 (the probe and 2 more misses)", got)
	}
}
