package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/boxproj/box/rpc"
)

// Deadlines fit the work. A command gets callTimeout, plus time for the
// bytes it moves at minRate. A GRAPH_COMPUTE has no answer: the next
// command that has one waits for the compute, so that command also gets
// computeMult times the median of this worker's recent computes, at least
// computeFloor and at most computeCeiling (the ceiling alone until there is
// a history). A stopped worker is noticed much sooner by the liveness
// probe; these bound a worker that answers pings but never finishes.
// SetTimeout replaces all of this with one fixed deadline.
const (
	callTimeout    = 15 * time.Second
	minRate        = 8 << 20 // bytes per second
	computeMult    = 20
	computeFloor   = 30 * time.Second
	computeCeiling = 10 * time.Minute
	computeHistory = 32
)

// computeTimes is a ring of recent compute durations.
type computeTimes struct {
	sent time.Time // when a compute was sent whose end has not been seen
	ring []time.Duration
	next int
}

func (c *computeTimes) reset() { *c = computeTimes{} }

func (c *computeTimes) observe(d time.Duration) {
	if len(c.ring) < computeHistory {
		c.ring = append(c.ring, d)
		return
	}
	c.ring[c.next] = d
	c.next = (c.next + 1) % computeHistory
}

// budget is the time a compute in flight may take.
func (c *computeTimes) budget() time.Duration {
	if len(c.ring) == 0 {
		return computeCeiling
	}
	s := slices.Clone(c.ring)
	slices.Sort(s)
	return min(max(computeMult*s[len(s)/2], computeFloor), computeCeiling)
}

// SetTimeout gives every command on this node one fixed deadline
// (--rpc-timeout), instead of deadlines derived from the work; 0 restores
// those.
func (n *Node) SetTimeout(d time.Duration) {
	n.mu.Lock()
	n.timeout = d
	n.mu.Unlock()
}

// deadline is the time cmd, moving size bytes, may take. Called with mu.
func (n *Node) deadline(cmd rpc.Cmd, size int) time.Duration {
	if n.timeout > 0 {
		return n.timeout
	}
	d := callTimeout + time.Duration(float64(size)/minRate*float64(time.Second))
	if !n.compute.sent.IsZero() {
		d += n.compute.budget()
	}
	return d
}

// call runs f on the main connection, under a deadline that fits cmd,
// unless the node has failed, after what an Upload has queued for the node
// (so the worker sees commands in ggml's order). An error fails the node.
func (n *Node) call(cmd rpc.Cmd, size int, f func(ctx context.Context, c *rpc.Client) error) error {
	if q := n.upload.Load(); q != nil {
		q.drain()
	}
	return n.do(cmd, size, f)
}

// do is call without waiting for an upload queue (its own goroutine).
func (n *Node) do(cmd rpc.Cmd, size int, f func(ctx context.Context, c *rpc.Client) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.Err(); err != nil {
		return err
	}
	limit := n.deadline(cmd, size)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	t0 := time.Now()
	err := f(ctx, n.cur.Load())
	n.lastUse = time.Now()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer to %s within %v: %w", cmd, limit, err)
		}
		n.fail(err)
		return n.Err()
	}
	var computeEnd time.Duration
	switch {
	case cmd == rpc.CmdGraphCompute:
		if n.compute.sent.IsZero() {
			n.compute.sent = t0
		}
	case !n.compute.sent.IsZero():
		// This command waited for the compute sent before it.
		computeEnd = n.lastUse.Sub(n.compute.sent)
		n.compute.observe(computeEnd)
		n.compute.sent = time.Time{}
	}
	n.stats.call(cmd, n.lastUse.Sub(t0), computeEnd)
	return nil
}

// probeTimeout bounds opening the liveness connection: a worker that serves
// one connection at a time accepts it but never answers HELLO.
const probeTimeout = 2 * time.Second

// openProbe opens the liveness connection, replacing any earlier one.
func (n *Node) openProbe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	p, err := rpc.Dial(ctx, n.Addr, append(n.dopts, rpc.WithHandshakeTimeout(probeTimeout))...)
	if err != nil {
		n.log.Info("no second connection for liveness; pinging on the main one when idle", "worker", n.Addr, "err", err)
		p = nil
	}
	n.probeMu.Lock()
	old := n.probe
	n.probe = p
	n.probeMu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (n *Node) closeProbe() {
	n.probeMu.Lock()
	p := n.probe
	n.probe = nil
	n.probeMu.Unlock()
	if p != nil {
		p.Close()
	}
}

// Heartbeat checks that the node is alive every every/2 until ctx ends. A
// worker that does not answer within every is failed: its main connection
// is closed, which also ends a call stalled on it, so a stopped worker is
// declared failed within 1.5 × every (7.5 s by default) whatever the head
// is doing. With a liveness connection the ping goes there and never waits
// for the node's lock; without one the main connection is pinged when it
// has been idle for every (a busy one is bounded by its call deadlines).
func (n *Node) Heartbeat(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.Err() != nil {
			continue
		}
		n.probeMu.Lock()
		p := n.probe
		n.probeMu.Unlock()
		if p == nil {
			n.pingMain(ctx, every)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := p.Ping(pctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		n.probeMu.Lock()
		replaced := n.probe != p
		n.probeMu.Unlock()
		if replaced || n.Err() != nil {
			continue // a reconnect or close swapped the probe under the ping
		}
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			n.fail(fmt.Errorf("no answer to a liveness ping within %v", every))
			continue
		}
		// The probe connection itself ended (the worker may reap idle
		// connections): open another, and judge the worker by that.
		n.openProbe(ctx)
		n.probeMu.Lock()
		ok := n.probe != nil
		n.probeMu.Unlock()
		if !ok && n.Err() == nil {
			n.fail(fmt.Errorf("liveness connection lost and not reopened: %w", err))
		}
	}
}

// pingMain pings on the main connection when it is idle and free.
func (n *Node) pingMain(ctx context.Context, every time.Duration) {
	if !n.mu.TryLock() {
		return // a call is in flight; its deadline bounds it
	}
	defer n.mu.Unlock()
	if time.Since(n.lastUse) < every || n.Err() != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, every)
	err := n.cur.Load().Ping(pctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		n.fail(fmt.Errorf("heartbeat: %w", err))
	}
	n.lastUse = time.Now()
}
