// Command box is one binary for distributed llama.cpp serving. Reached
// through a link named boxtop it runs the TUI.
//
// Each command is a cobra command whose RunE turns flags into a package's
// options, calls the package, and returns an error; run maps that error to
// the exit code: 0 ok, 1 a runtime failure, 2 a usage error (a bad flag or
// argument, which cobra or the command reports as a usageError).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/boxproj/box/buildinfo"
	"github.com/boxproj/box/worker/compute"
)

// version and commit are set by make build: -ldflags "-X main.version=$(git
// describe --always --dirty) -X main.commit=$(git rev-parse HEAD)".
var version, commit = "dev", ""

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// usageError is a bad flag or argument: exit 2, with a pointer to --help.
type usageError struct{ error }

// cannotRun is exit 2 without the pointer: leakcheck's "could not run".
type cannotRun struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// run is box: args[0] picks boxtop or box, the rest is the command line.
func run(args []string, stdout, stderr io.Writer) int {
	name, rest := filepath.Base(args[0]), append([]string{}, args[1:]...)
	if name != "boxtop" && len(rest) > 0 && rest[0] == "__compute" {
		// A worker's compute process (one per connection); not for users,
		// so it is no command: no help, no completion, no flag parsing.
		return compute.Main(rest[1:], stdout, stderr)
	}
	// The first signal cancels ctx (graceful stop); stop() restores default
	// handling so a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	root := newRoot(stdout, stderr)
	if name == "boxtop" {
		root = newTop("boxtop")
		root.SetOut(stdout)
		root.SetErr(stderr)
	}
	root.Version = version
	root.SetVersionTemplate(buildinfo.Read(version, commit).String())
	root.SetArgs(rest)
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetGlobalNormalizationFunc(normalize)
	backendsFlag(root)

	if name != "boxtop" && len(rest) == 0 {
		root.SetOut(stderr)
		root.Help()
		return 2
	}
	cmd, err := root, error(nil)
	if name != "boxtop" && !strings.HasPrefix(rest[0], "__complete") { // completion requests are cobra's
		// An unknown command, at any level, is refused with suggestions
		// (Find itself refuses one at the top).
		var left []string
		if cmd, left, err = root.Find(rest); err == nil && cmd.HasSubCommands() && len(left) > 0 && !strings.HasPrefix(left[0], "-") {
			err = fmt.Errorf("unknown command %q for %q", left[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(left[0]); len(s) > 0 {
				err = fmt.Errorf("%w\n\nDid you mean this?\n\t%s", err, strings.Join(s, "\n\t"))
			}
		}
		if err != nil {
			err = usageError{errors.New(strings.TrimSpace(err.Error()))}
		}
	}
	if err == nil {
		if cmd, err = root.ExecuteContextC(ctx); err == nil {
			return 0
		}
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
	if errors.As(err, new(usageError)) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	if errors.As(err, new(cannotRun)) {
		return 2
	}
	return 1
}

// newRoot is box with its commands; the completion scripts go to stdout.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "box",
		Short:   "Distributed llama.cpp serving that gives memory back",
		Long:    "box: distributed llama.cpp serving that gives memory back.\nOne binary: the head (serve), the workers (worker), a live view (top, also boxtop) and the tools around them.",
		Example: "  box serve --demo\n  box worker --listen 0.0.0.0:50052 --max-memory 20GiB\n  box help serve",
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newWorker(), newChat(), newModel(), newBench(), newLeakcheck(), newProbe(), newTop("top"), newVersion())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  box help serve\n  box help model synth"
		case "completion":
			c.Example = "  box completion bash > /etc/bash_completion.d/box\n  box completion zsh > \"${fpath[1]}/_box\"\n  box completion fish > ~/.config/fish/completions/box.fish"
			for _, sh := range c.Commands() {
				sh.Example, sh.Args = fmt.Sprintf("  source <(box completion %s)", sh.Name()), noArgs
			}
		}
	}
	return root
}

func newVersion() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "version",
		Short:   "Print box's version, commit, Go, llama.cpp and RPC protocol versions",
		Example: "  box version\n  box version --json | jq -r .commit\n  boxtop --version",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(c.OutOrStdout(), buildinfo.Read(version, commit).Format(asJSON))
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the same as JSON")
	return c
}

// noArgs refuses positional arguments: a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// oldNames keeps earlier releases' flag names working as long flags (--o,
// --v) next to the new ones (--output, --verbose).
var oldNames = map[string]string{"o": "output", "v": "verbose"}

func normalize(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := oldNames[name]; ok {
		name = n
	}
	return pflag.NormalizedName(name)
}

// newLogger writes text logs to w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
