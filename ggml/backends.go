package ggml

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include "ggml.h"
#include "ggml-backend.h"

extern void boxGgmlLog(int level, char *text);
extern void boxGgmlAbort(char *msg);
static void box_lib_log_cb(enum ggml_log_level level, const char *text, void *ud) { (void)ud; boxGgmlLog((int)level, (char *)text); }
static void box_lib_abort_cb(const char *msg) { boxGgmlAbort((char *)msg); }

typedef void (*box_log_set_t)(ggml_log_callback, void *);
typedef ggml_abort_callback_t (*box_abort_set_t)(ggml_abort_callback_t);
typedef int (*box_score_t)(void);

// box_lib_open opens a backend library the way ggml_backend_load will (the
// same handle) and routes ggml's log and abort callbacks to box's, both in
// this binary's ggml and in the libggml-base the library was linked with.
// (The Go binary is linked with -rdynamic, so its own ggml symbols
// interpose on the library's and the library mostly runs on the binary's
// ggml state; setting both copies holds either way.) *score is the
// library's ggml_backend_score() (-1 when it has none; 0 means the host
// cannot run it). NULL and *err on failure.
static void *box_lib_open(const char *path, int *score, const char **err) {
	ggml_log_set(box_lib_log_cb, NULL);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { *err = dlerror(); return NULL; }
	if (!dlsym(h, "ggml_backend_init")) { *err = "not a ggml backend (no ggml_backend_init)"; dlclose(h); return NULL; }
	box_score_t sc = (box_score_t)dlsym(h, "ggml_backend_score");
	*score = sc ? sc() : -1;
	box_log_set_t ls = (box_log_set_t)dlsym(h, "ggml_log_set");
	if (ls) ls(box_lib_log_cb, NULL);
	box_abort_set_t as = (box_abort_set_t)dlsym(h, "ggml_set_abort_callback");
	if (as) as(box_lib_abort_cb);
	return h;
}
*/
import "C"

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// EnvBackends names the directory of backend libraries (BackendsDir);
// "off" loads none.
const EnvBackends = "BOX_BACKENDS"

// UseBackends settles the directory of backend libraries for this process
// and every process it starts (a worker's compute processes, leakcheck's
// heads and workers): dir (box's --backends; "off" loads none) when given,
// else BackendsDir's choice; it is exported as $BOX_BACKENDS ("off" when
// none). It returns the directory, "" for none; it loads nothing.
func UseBackends(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil && dir != "" && dir != "off" && dir != "none" {
		dir = abs
	}
	if dir != "" {
		os.Setenv(EnvBackends, dir)
	}
	resolved := BackendsDir()
	os.Setenv(EnvBackends, cmp.Or(resolved, "off"))
	return resolved
}

// BackendsDir is where box looks for ggml backend libraries: $BOX_BACKENDS
// when set ("" when it says off), else lib/box beside the executable's
// directory (bin/box → lib/box, /usr/local/bin/box → /usr/local/lib/box).
func BackendsDir() string {
	if d, ok := os.LookupEnv(EnvBackends); ok {
		if d == "off" || d == "none" {
			return ""
		}
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "lib", "box")
}

// Library is one backend library found by LoadBackends, and what became
// of it.
type Library struct {
	Path string `json:"path"`
	// Backend is the name of the ggml backend it registered, and Devices
	// the devices it brought; both empty when it was skipped.
	Backend string   `json:"backend,omitempty"`
	Devices []string `json:"devices,omitempty"`
	// Skipped says why the library was not loaded.
	Skipped string `json:"skipped,omitempty"`
}

var (
	loadMu sync.Mutex
	loaded = map[string]Library{}
)

// LoadBackends loads every ggml backend library in dir (libggml-NAME.so,
// beside the libggml-base.so they were built with) into ggml's registry, so
// their devices appear in Devices and to llama.cpp. The built-in CPU
// backend stays the CPU device: CPU variant libraries (libggml-cpu-*.so)
// are listed as skipped. A library that cannot be loaded (a missing
// driver or runtime, a CPU the host lacks) is skipped with the reason. A
// missing dir loads nothing. Loading the same path twice does nothing the
// second time.
func LoadBackends(dir string) []Library {
	if dir == "" {
		return nil
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "libggml-*.so"))
	slices.Sort(paths)
	loadMu.Lock()
	defer loadMu.Unlock()
	var out []Library
	for _, p := range paths {
		base := filepath.Base(p)
		if strings.HasPrefix(base, "libggml-base") {
			continue
		}
		if l, ok := loaded[p]; ok {
			out = append(out, l)
			continue
		}
		l := loadOne(p, base)
		loaded[p] = l
		out = append(out, l)
	}
	return out
}

func loadOne(p, base string) Library {
	l := Library{Path: p}
	if strings.HasPrefix(base, "libggml-cpu") {
		l.Skipped = "CPU variant: the built-in CPU backend serves the CPU"
		return l
	}
	cp := C.CString(p)
	defer C.free(unsafe.Pointer(cp))
	var score C.int
	var cerr *C.char
	h := C.box_lib_open(cp, &score, &cerr)
	if h == nil {
		l.Skipped = C.GoString(cerr)
		return l
	}
	// The handle stays open: the library lives as long as the process.
	if score == 0 {
		l.Skipped = "the library says this host cannot run it (ggml_backend_score 0)"
		return l
	}
	reg := C.ggml_backend_load(cp)
	if reg == nil {
		l.Skipped = "ggml_backend_load refused it (initialisation failed or a different backend API version)"
		return l
	}
	l.Backend = C.GoString(C.ggml_backend_reg_name(reg))
	for i := 0; i < int(C.ggml_backend_reg_dev_count(reg)); i++ {
		l.Devices = append(l.Devices, C.GoString(C.ggml_backend_dev_name(C.ggml_backend_reg_dev_get(reg, C.size_t(i)))))
	}
	return l
}

// Loaded lists every library LoadBackends has seen in this process, in
// path order.
func Loaded() []Library {
	loadMu.Lock()
	defer loadMu.Unlock()
	out := make([]Library, 0, len(loaded))
	for _, l := range loaded {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Library) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// LogLibraries logs what LoadBackends did: one line per library.
func LogLibraries(log *slog.Logger, dir string, libs []Library) {
	if len(libs) == 0 {
		log.Debug("no ggml backend libraries", "dir", dir)
		return
	}
	for _, l := range libs {
		if l.Skipped != "" {
			lvl := slog.LevelWarn
			if strings.HasPrefix(filepath.Base(l.Path), "libggml-cpu") {
				lvl = slog.LevelDebug
			}
			log.Log(context.Background(), lvl, "ggml backend skipped", "lib", l.Path, "reason", l.Skipped)
			continue
		}
		devs := "none"
		if len(l.Devices) > 0 {
			devs = strings.Join(l.Devices, ",")
		}
		log.Info("ggml backend loaded", "lib", l.Path, "backend", l.Backend, "devices", devs)
	}
}

// Log lines of the loaded libraries' ggml arrive in pieces (CONT); they
// go to slog.Default() one line at a time. ggml's INFO is chatty (device
// enumeration in every process), so it is logged at debug.
var (
	libLogMu   sync.Mutex
	libLogBuf  strings.Builder
	libLogLast slog.Level
)

//export boxGgmlLog
func boxGgmlLog(level C.int, text *C.char) {
	s := C.GoString(text)
	libLogMu.Lock()
	defer libLogMu.Unlock()
	switch int(level) {
	case 5: // GGML_LOG_LEVEL_CONT
	case 4:
		libLogLast = slog.LevelError
	case 3:
		libLogLast = slog.LevelWarn
	default:
		libLogLast = slog.LevelDebug
	}
	libLogBuf.WriteString(s)
	for {
		all := libLogBuf.String()
		i := strings.IndexByte(all, '\n')
		if i < 0 {
			return
		}
		line := strings.TrimSpace(all[:i])
		libLogBuf.Reset()
		libLogBuf.WriteString(all[i+1:])
		if line != "" {
			slog.Default().Log(context.Background(), libLogLast, "ggml: "+line)
		}
	}
}

// String is a short description of a library's fate, for tables.
func (l Library) String() string {
	if l.Skipped != "" {
		return fmt.Sprintf("%s: skipped: %s", filepath.Base(l.Path), l.Skipped)
	}
	return fmt.Sprintf("%s: %s %v", filepath.Base(l.Path), l.Backend, l.Devices)
}
