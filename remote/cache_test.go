package remote_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// cacheHits reads box_worker_cache_hits_total from a test worker's admin API.
func cacheHits(t *testing.T, w *workertest.Worker) int {
	t.Helper()
	resp, err := http.Get(w.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^box_worker_cache_hits_total (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no cache hits metric in\n%s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// mappingsUnder counts the mappings of files under dir in all processes.
func mappingsUnder(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob("/proc/[0-9]*/maps")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a process that ended meanwhile
		}
		n += strings.Count(string(b), dir+"/")
	}
	return n
}

// A cold load (the worker misses the first hash offered) sends the rest
// without hashing each first, yet asks the worker to keep all of it; once
// the head has hashed the file, the next load of the same weights is
// offered by hash and applied from the cache: every weight over the
// threshold is a hit.
func TestWarmLoadHitsAfterColdLoad(t *testing.T) {
	cfg, _ := synth.Preset("tiny")
	cfg.Layers, cfg.Embd, cfg.Heads, cfg.KVHeads, cfg.FF = 2, 512, 8, 4, 1024 // F32: feed-forward matrices of 2 MiB
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	w := workertest.Start(t, worker.Config{CacheDir: cacheDir})
	var mapped int // cache entries mapped into a compute process, once loaded
	load := func() []llama.Token {
		n, err := remote.Connect(context.Background(), w.Addr, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		toks := generateAfter(t, path, llama.ModelParams{Devices: []string{n.Devices()[0].Name}, GPULayers: -1, Check: n.Err}, 128, 1, 8,
			func() { mapped = mappingsUnder(t, cacheDir) })
		if err := n.Err(); err != nil {
			t.Fatal(err)
		}
		return toks
	}
	cold := load()
	if h := cacheHits(t, w); h != 0 {
		t.Fatalf("%d cache hits on a cold load", h)
	}
	if mapped != 0 {
		t.Fatalf("%d cache entries mapped on a cold load", mapped)
	}
	// The head works the hashes of what it sent unhashed out from the file
	// (cluster.Load does this after a load), and the worker writes its
	// cache entries after the data is acknowledged.
	remote.HashFileInBackground(path, quiet)
	remote.WaitHashing()
	time.Sleep(200 * time.Millisecond)
	warm := load()
	// The three feed-forward matrices of each layer are over 1 MiB.
	if h := cacheHits(t, w); h < 3*cfg.Layers {
		t.Fatalf("warm load: %d cache hits, want at least %d", h, 3*cfg.Layers)
	}
	// The hits went into the weights' buffer as mappings of the entries
	// (one per entry's whole pages at least; a split mapping counts more).
	if mapped < 3*cfg.Layers {
		t.Fatalf("warm load: %d mappings of cache entries in the compute process, want at least %d", mapped, 3*cfg.Layers)
	}
	if len(warm) != len(cold) {
		t.Fatalf("warm %v\ncold %v", warm, cold)
	}
	for i := range warm {
		if warm[i] != cold[i] {
			t.Fatalf("token %d differs:\nwarm %v\ncold %v", i, warm, cold)
		}
	}
}
