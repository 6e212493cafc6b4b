package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/ggml"
)

// GPU backends are shared libraries (libggml-vulkan.so, libggml-cuda.so,
// built by `make backends` into lib/box beside bin/box) that ggml loads at
// run time; the CPU backend is built in and always there. Every command
// takes --backends DIR ("off" loads none); else BOX_BACKENDS=DIR; else
// ../lib/box from the executable's directory. The directory is exported as
// BOX_BACKENDS, so every process box starts (a worker's compute processes,
// leakcheck's heads and workers) loads the same libraries.
func backendsFlag(root *cobra.Command) {
	dir := root.PersistentFlags().String("backends", "", "directory of ggml backend libraries (libggml-vulkan.so, ...), or off (default: $BOX_BACKENDS, else lib/box beside bin/)")
	root.PersistentPreRun = func(c *cobra.Command, _ []string) {
		resolved := ggml.UseBackends(*dir)
		switch c.Name() {
		case "serve", "probe", "bench":
			// These use ggml devices in this process, and serve and bench
			// hold model buffers: freed ones go back (FixMmapThreshold).
			ggml.FixMmapThreshold()
			log := slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			ggml.LogLibraries(log, resolved, ggml.LoadBackends(resolved))
		}
		// worker: the supervisor never loads ggml; its compute processes do,
		// from BOX_BACKENDS. leakcheck, top, chat, model: no devices.
	}
}
