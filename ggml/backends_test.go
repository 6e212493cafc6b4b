package ggml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LoadBackends says why it skips what it cannot load, and loads nothing
// from a directory that is not there.
func TestLoadBackendsSkips(t *testing.T) {
	if libs := LoadBackends(filepath.Join(t.TempDir(), "none")); len(libs) != 0 {
		t.Fatalf("missing dir: %+v", libs)
	}
	if libs := LoadBackends(""); libs != nil {
		t.Fatalf("empty dir name: %+v", libs)
	}
	dir := t.TempDir()
	for _, name := range []string{"libggml-base.so", "libggml-cpu-haswell.so", "libggml-bogus.so"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not an ELF file"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := len(Devices())
	libs := LoadBackends(dir)
	if len(libs) != 2 {
		t.Fatalf("want the CPU variant and the bogus library, got %+v", libs)
	}
	if l := libs[0]; !strings.HasSuffix(l.Path, "libggml-bogus.so") || l.Backend != "" || !strings.Contains(l.Skipped, "libggml-bogus.so") {
		t.Fatalf("bogus: %+v", l)
	}
	if l := libs[1]; !strings.Contains(l.Skipped, "CPU variant") {
		t.Fatalf("CPU variant: %+v", l)
	}
	if len(Devices()) != n {
		t.Fatal("a skipped library added devices")
	}
	if again := LoadBackends(dir); len(again) != 2 || again[0].Skipped != libs[0].Skipped {
		t.Fatalf("second load: %+v", again)
	}
	if len(Loaded()) < 2 {
		t.Fatalf("Loaded: %+v", Loaded())
	}
	t.Logf("%v", libs)
}

func TestBackendsDir(t *testing.T) {
	t.Setenv(EnvBackends, "off")
	if d := BackendsDir(); d != "" {
		t.Fatalf("off: %q", d)
	}
	t.Setenv(EnvBackends, "/opt/box/lib")
	if d := BackendsDir(); d != "/opt/box/lib" {
		t.Fatalf("env: %q", d)
	}
	os.Unsetenv(EnvBackends)
	if d := BackendsDir(); !strings.HasSuffix(d, filepath.Join("lib", "box")) {
		t.Fatalf("default: %q", d)
	}
}
