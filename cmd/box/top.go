package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/tui"
)

// runTop is boxtop (also `box top`): a live view of workers' memory,
// connections and bindings, or one frame with --once.
func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("boxtop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		nodes    = fs.String("nodes", "", "worker admin URLs, comma-separated; name=URL names a node")
		head     = fs.String("head", "", "a head's URL: watch the workers its /v1/cluster lists, through their admin URLs")
		interval = fs.Duration("interval", time.Second, "time between polls")
		timeout  = fs.Duration("timeout", 2*time.Second, "how long each request may take (a dead node delays a poll by at most this)")
		once     = fs.Bool("once", false, "print one frame to stdout and exit (1 when a node is down)")
		width    = fs.Int("width", 80, "columns of the --once frame")
		nvmlMode = fs.String("nvml", "auto", "alert on GPU memory of processes that are not box, from this host's NVML: auto (when a node is on this host), on, off")
		banner   = fs.String("banner", "", "lines to show under the header (newline-separated; the demo shows its URL and a curl line)")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: boxtop (--nodes URL,... | --head URL) [--interval 1s] [--once [--width 80]]\n\n"+
			"Keys: ↑↓/jk move, tab pane, enter buffers, esc back, / filter, s sort, c close conn, ? help, q quit.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "boxtop: "+format+"\n", a...)
		return errUsage
	}
	targets, err := tui.ParseTargets(*nodes)
	if err != nil {
		return bad("--nodes: %v", err)
	}
	switch {
	case len(targets) == 0 && *head == "":
		return bad("give --nodes URL,... (worker admin APIs) or --head URL")
	case len(targets) > 0 && *head != "":
		return bad("give --nodes or --head, not both")
	case *interval <= 0 || *timeout <= 0:
		return bad("--interval and --timeout must be positive")
	case *width < 40:
		return bad("--width must be at least 40")
	}
	cfg := tui.Config{Nodes: targets, Head: *head, Timeout: *timeout}
	switch *nvmlMode {
	case "on":
		cfg.NVML = localNVML
	case "off":
	case "auto":
		local := isLocal(*head)
		for _, t := range targets {
			local = local || isLocal(t.URL)
		}
		if local {
			cfg.NVML = localNVML
		}
	default:
		return bad("--nvml: want auto, on or off")
	}
	p := tui.NewPoller(cfg)
	if *once {
		pctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
		defer cancel()
		snap := p.Poll(pctx)
		fmt.Fprint(stdout, tui.Render(snap, *width, tui.Options{}))
		var down int
		for _, n := range snap.Nodes {
			if n.State == tui.StateDown {
				down++
			}
		}
		if snap.HeadError != "" {
			return fmt.Errorf("%s", snap.HeadError)
		}
		if down > 0 {
			return fmt.Errorf("%d of %d nodes down", down, len(snap.Nodes))
		}
		return nil
	}
	opt := tui.Options{Interval: *interval}
	if *banner != "" {
		opt.Banner = strings.Split(strings.TrimRight(*banner, "\n"), "\n")
	}
	m := tui.New(p, opt)
	prog := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(stdout))
	_, err = prog.Run()
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: a normal way out
	}
	return err
}

func localNVML() *probe.NVML {
	nv := probe.NVMLInfo(nil)
	return &nv
}

// isLocal reports whether a URL's host is this machine's loopback.
func isLocal(u string) bool {
	if u == "" {
		return false
	}
	h := u
	if _, rest, ok := strings.Cut(h, "://"); ok {
		h = rest
	}
	h, _, _ = strings.Cut(h, "/")
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}
