// Command box is one binary for distributed llama.cpp serving. Reached
// through a link named boxtop it runs the TUI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/boxproj/box/worker/compute"
)

const usage = `box: distributed llama.cpp serving that gives memory back

Usage:
  box serve  [--model FILE | --demo] [--listen ADDR] ...   OpenAI-compatible server
  box worker [--listen ADDR] [--admin ADDR] ...            ggml RPC worker (protocol 3.6.0)
  box chat [--url URL] MESSAGE                             ask a running server (streams the answer)
  box model synth --preset tiny|1b -o FILE ...             write a synthetic GGUF model
  box bench [--out FILE] ...                               llama-bench-style throughput
  box leakcheck [--demo | --model FILE] [--rpc ...] ...    restart heads, check workers give memory back
  box probe [--rpc host:port,...] [--admin URL,...] [--json] memory of every device of every node
  box top (--nodes URL,... | --head URL) [--once]          live memory, connections, bindings (boxtop)
  box version

Run "box COMMAND --help" for a command's flags.
`

// version is set with -ldflags "-X main.version=..." by release builds.
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// errUsage marks errors already explained by a flag set.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	// The first signal cancels ctx (graceful stop); stop() restores default
	// handling so a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	name := filepath.Base(args[0])
	rest := args[1:]
	if name != "boxtop" {
		if len(rest) == 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		name, rest = rest[0], rest[1:]
	}

	var err error
	switch name {
	case "__compute":
		// A worker's compute process (one per connection); not for users.
		return compute.Main(rest, stdout, stderr)
	case "serve":
		err = runServe(ctx, rest, stdout, stderr)
	case "worker":
		err = runWorker(ctx, rest, stdout, stderr)
	case "chat":
		err = runChat(ctx, rest, stdout, stderr)
	case "model":
		err = runModel(ctx, rest, stdout, stderr)
	case "bench":
		err = runBench(ctx, rest, stdout, stderr)
	case "leakcheck":
		err = runLeakcheck(ctx, rest, stdout, stderr)
	case "probe":
		err = runProbe(ctx, rest, stdout, stderr)
	case "top", "boxtop":
		err = runTop(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "box %s\n", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "box: unknown command %q\n\n%s", name, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "box %s: %v\n", name, err)
		return 1
	}
}

// newLogger writes text logs to w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// parseFlags parses fs and turns flag errors into errUsage (the flag package
// has already printed them).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	return nil
}
