package main

import (
	"os"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe/local"
	"github.com/boxproj/box/tui"
)

// newTop is boxtop, also `box top` (use is "top" or "boxtop"): a live view of
// workers' memory, connections and bindings, or one frame with --once.
func newTop(use string) *cobra.Command {
	var (
		nodes, head, nvmlMode, banner string
		headKey                       string
		interval, timeout             time.Duration
		once                          bool
		width                         int
	)
	c := &cobra.Command{
		Use:   use + " (--nodes URL,... | --head URL) [flags]",
		Short: "Watch workers' memory, connections and buffers live (boxtop)",
		Long: "A live terminal view of every node's memory, the connections and the buffers bound to them, alerts\n" +
			"and events; with --head also what the head serves. --once prints one frame (exit 1 when a node is down).\n\n" +
			"Keys: ↑↓/jk move, tab pane, enter buffers, esc back, / filter, s sort, S reverse, e alerts only,\n" +
			"c close conn, r refresh, ? help, q quit.",
		Example: "  boxtop --head http://127.0.0.1:8080\n  box top --nodes w1=127.0.0.1:50053,w2=10.0.0.6:50053\n" +
			"  boxtop --nodes 127.0.0.1:50053 --once --width 100",
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&nodes, "nodes", "", "worker admin URLs, comma-separated; name=URL names a node")
	f.StringVar(&head, "head", "", "a head's URL: watch the workers its /v1/cluster lists, through their admin URLs")
	f.StringVar(&headKey, "api-key", os.Getenv(api.HeadKeyEnv), "with --head: the head's API key (box serve --api-key), sent to the head only (default: $"+api.HeadKeyEnv+")")
	f.DurationVar(&interval, "interval", time.Second, "time between polls")
	f.DurationVar(&timeout, "timeout", 2*time.Second, "how long each request may take (a dead node delays a poll by at most this)")
	f.BoolVar(&once, "once", false, "print one frame to stdout and exit (1 when a node is down)")
	f.IntVar(&width, "width", 80, "columns of the --once frame")
	f.StringVar(&nvmlMode, "nvml", "auto", "alert on GPU memory of processes that are not box, from this host's NVML: auto (when a node is on this host), on, off")
	f.StringVar(&banner, "banner", "", "lines to show under the header (newline-separated; the demo shows its URL and a curl line)")
	token := adminTokenFlags(f)
	c.RunE = func(c *cobra.Command, _ []string) error {
		targets, err := tui.ParseTargets(nodes)
		switch {
		case err != nil:
			return usagef("--nodes: %v", err)
		case len(targets) == 0 && head == "":
			return usagef("give --nodes URL,... (worker admin APIs) or --head URL")
		case len(targets) > 0 && head != "":
			return usagef("give --nodes or --head, not both")
		case interval <= 0 || timeout <= 0:
			return usagef("--interval and --timeout must be positive")
		case width < 40:
			return usagef("--width must be at least 40")
		case nvmlMode != "auto" && nvmlMode != "on" && nvmlMode != "off":
			return usagef("--nvml: want auto, on or off")
		case f.Changed("api-key") && head == "":
			return usagef("--api-key is the head's: give --head")
		}
		tok, err := token()
		if err != nil {
			return err
		}
		cfg := tui.Config{Nodes: targets, Head: head, Timeout: timeout, AdminToken: tok, HeadKey: headKey}
		if nvmlMode == "on" || nvmlMode == "auto" && cfg.Local() {
			cfg.NVML = local.NVML
		}
		p := tui.NewPoller(cfg)
		if once {
			return tui.Once(c.Context(), p, timeout, width, c.OutOrStdout())
		}
		opt := tui.Options{Interval: interval}
		if banner != "" {
			opt.Banner = strings.Split(strings.TrimRight(banner, "\n"), "\n")
		}
		prog := tea.NewProgram(tui.New(p, opt), tea.WithAltScreen(), tea.WithContext(c.Context()), tea.WithOutput(c.OutOrStdout()))
		if _, err = prog.Run(); err != nil && c.Context().Err() != nil {
			return nil // interrupted: a normal way out
		}
		return err
	}
	return c
}
