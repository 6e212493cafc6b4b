package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/boxproj/box/ggml"
)

// GPU backends are shared libraries (libggml-vulkan.so, libggml-cuda.so,
// built by `make backends` into lib/box beside bin/box) that ggml loads at
// run time; the CPU backend is built in and always there. This runs before
// the command line is parsed, so it works the same for every command and
// needs no flag of theirs:
//
//	--backends DIR (anywhere on the command line; "off" loads none)
//	BOX_BACKENDS=DIR
//	default: ../lib/box from the executable's directory
//
// The directory is exported as BOX_BACKENDS, so every process box starts
// (a worker's compute processes, leakcheck's heads and workers) loads the
// same libraries.
func init() {
	setupBackends()
}

func setupBackends() {
	args, dir, err := backendsFlag(os.Args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "box:", err)
		os.Exit(2)
	}
	os.Args = args
	if dir != "" {
		if dir != "off" && dir != "none" {
			if abs, err := filepath.Abs(dir); err == nil {
				dir = abs
			}
		}
		os.Setenv(ggml.EnvBackends, dir)
	}
	resolved := ggml.BackendsDir()
	if resolved == "" {
		os.Setenv(ggml.EnvBackends, "off")
	} else {
		os.Setenv(ggml.EnvBackends, resolved)
	}
	if filepath.Base(args[0]) == "boxtop" {
		return
	}
	switch command(args[1:]) {
	case "serve", "probe", "bench":
		// These use ggml devices in this process.
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		ggml.LogLibraries(log, resolved, ggml.LoadBackends(resolved))
	case "__compute":
		// compute.Main loads them (and its describe run logs them).
	default:
		// worker: the supervisor never loads ggml; its compute processes
		// do, from BOX_BACKENDS. leakcheck, top, chat, model: no devices.
	}
}

// backendsFlag takes --backends DIR (or --backends=DIR) out of args.
func backendsFlag(args []string) (rest []string, dir string, err error) {
	rest = make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if i > 0 && a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch {
		case i > 0 && (a == "--backends" || a == "-backends"):
			if i+1 >= len(args) {
				return nil, "", fmt.Errorf("--backends needs a directory")
			}
			dir = args[i+1]
			i++
		case i > 0 && (strings.HasPrefix(a, "--backends=") || strings.HasPrefix(a, "-backends=")):
			dir = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return rest, dir, nil
}

// command is the subcommand: the first argument that is not a flag.
func command(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}
