package tui

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Once polls p once (within timeout, plus 5 s for the head) and writes one
// frame of width columns to w: boxtop --once. The error says what is down:
// the head, or how many nodes.
func Once(ctx context.Context, p *Poller, timeout time.Duration, width int, w io.Writer) error {
	pctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	snap := p.Poll(pctx)
	fmt.Fprint(w, Render(snap, width, Options{}))
	var down int
	for _, n := range snap.Nodes {
		if n.State == StateDown {
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
