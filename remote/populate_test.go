package remote_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
)

// mappedRss sums the resident bytes of this process's mappings of path.
func mappedRss(t *testing.T, path string) (rss int64, mappings int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			if in {
				mappings++
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			rss += kb << 10
		}
	}
	return rss, mappings
}

// llama.cpp maps the model with MAP_POPULATE, which builds page tables for
// the whole file; while an Upload of the same file is under way nothing
// reads that mapping, and populate.c drops the flag. Measured through the
// real loader: the model's mapping is fully resident after a plain load,
// and holds next to nothing when the load happens inside an Upload.
func TestUploadLeavesTheLoadersMappingUnpopulated(t *testing.T) {
	path, err := filepath.EvalSymlinks(uploadModel(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	load := func() (int64, int) {
		m, err := llama.LoadModel(context.Background(), path, llama.ModelParams{NoHugePages: true})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return mappedRss(t, path)
	}
	tests := []struct {
		name   string
		upload bool
	}{
		{"plain load: populated", false},
		{"inside an upload: not populated", true},
		{"after the upload: populated again", false},
	}
	for _, tc := range tests {
		var up *remote.Upload
		if tc.upload {
			if up, err = remote.StartUpload(path, nil, quiet); err != nil {
				t.Fatal(err)
			}
		}
		rss, n := load()
		if up != nil {
			up.Wait()
		}
		if n == 0 {
			t.Fatalf("%s: the loader does not map %s", tc.name, path)
		}
		populated := rss > st.Size()*8/10
		if populated == tc.upload {
			t.Errorf("%s: %d of %d bytes of the file's mapping resident", tc.name, rss, st.Size())
		}
	}
}
