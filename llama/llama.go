// Package llama is box's cgo binding over the llama.cpp vendored in
// github.com/ollama/ollama. Every C object it hands out has a Go owner with a
// Close method; nothing relies on finalizers.
//
// Headers come from CGO_CPPFLAGS (see the Makefile), which point into the
// module cache, so builds must go through make or export the same flags.
package llama

/*
#include <stdlib.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "llama.h"

extern void boxLlamaLog(int level, char *text);

// Filter in C so the many DEBUG lines never cross into Go.
static int box_min_level = GGML_LOG_LEVEL_INFO;
static int box_last_level = GGML_LOG_LEVEL_INFO;

static void box_log_cb(enum ggml_log_level level, const char *text, void *ud) {
	(void)ud;
	int l = (int)level;
	if (l == GGML_LOG_LEVEL_CONT) {
		l = box_last_level;
	} else {
		box_last_level = l;
	}
	if (l < box_min_level) return;
	boxLlamaLog(l, (char *)text);
}

static void box_log_install(int min_level) {
	box_min_level = min_level;
	llama_log_set(box_log_cb, NULL);
}
*/
import "C"

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"unsafe"

	_ "github.com/ollama/ollama/llama/llama.cpp/src"
)

// The C log callback has no user data that could carry a Go value, so the
// bridge to slog is package state: one logger, one line buffer, and an
// optional capture used while a model loads so its error lines can become the
// returned error.
var logBridge struct {
	mu      sync.Mutex
	logger  *slog.Logger
	line    strings.Builder
	level   int
	capture *[]string
}

var initOnce sync.Once

// Init sets up the llama.cpp backend and routes its log to logger. Later
// calls only replace the logger. It is called by LoadModel and Devices, so
// calling it explicitly is needed only to pick the logger.
func Init(logger *slog.Logger) {
	logBridge.mu.Lock()
	logBridge.logger = logger
	logBridge.mu.Unlock()
	initOnce.Do(func() {
		min := C.GGML_LOG_LEVEL_INFO
		if logger != nil && logger.Enabled(context.Background(), slog.LevelDebug) {
			min = C.GGML_LOG_LEVEL_DEBUG
		}
		C.box_log_install(C.int(min))
		C.llama_backend_init()
	})
}

func ensureInit() { Init(currentLogger()) }

func currentLogger() *slog.Logger {
	logBridge.mu.Lock()
	defer logBridge.mu.Unlock()
	if logBridge.logger == nil {
		return slog.Default()
	}
	return logBridge.logger
}

//export boxLlamaLog
func boxLlamaLog(level C.int, text *C.char) {
	s := C.GoString(text)
	logBridge.mu.Lock()
	defer logBridge.mu.Unlock()
	logBridge.level = int(level)
	logBridge.line.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		return
	}
	line := strings.TrimSpace(logBridge.line.String())
	logBridge.line.Reset()
	if line == "" {
		return
	}
	lvl := slogLevel(int(level))
	if logBridge.capture != nil && int(level) >= C.GGML_LOG_LEVEL_ERROR {
		// The line becomes the returned error; logging it too would say it twice.
		*logBridge.capture = append(*logBridge.capture, line)
		lvl = slog.LevelDebug
	}
	logger := logBridge.logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Log(context.Background(), lvl, line, "src", "llama.cpp")
}

func slogLevel(l int) slog.Level {
	switch l {
	case C.GGML_LOG_LEVEL_DEBUG:
		return slog.LevelDebug
	case C.GGML_LOG_LEVEL_WARN:
		return slog.LevelWarn
	case C.GGML_LOG_LEVEL_ERROR:
		return slog.LevelError
	default:
		// llama.cpp's INFO is chatty (every tensor type count, every KV key);
		// it is debug detail for box's users.
		return slog.LevelDebug
	}
}

// captureErrors collects llama.cpp error lines until the returned function is
// called. Loads are serialised by the caller so the lines belong to one load.
func captureErrors() func() []string {
	var lines []string
	logBridge.mu.Lock()
	logBridge.capture = &lines
	logBridge.mu.Unlock()
	return func() []string {
		logBridge.mu.Lock()
		defer logBridge.mu.Unlock()
		logBridge.capture = nil
		return lines
	}
}

// SystemInfo is llama.cpp's summary of the CPU features this build uses
// (AVX2, F16C, ...): the quickest check that the SIMD flags took effect.
func SystemInfo() string {
	ensureInit()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// cString allocates a C string the caller frees with C.free.
func cString(s string) *C.char { return C.CString(s) }

func free(p unsafe.Pointer) { C.free(p) }
