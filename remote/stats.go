package remote

import (
	"sync/atomic"
	"time"

	"github.com/boxproj/box/rpc"
)

// CallStats is where a node's commands spent the head's time, counted
// since the node connected (a snapshot; subtract two for an interval).
// Commands on one node go one at a time; after a load (whose upload sends
// to every node at once) the head's go one at a time over all nodes, so
// their times add up.
type CallStats struct {
	// Calls is how many commands were sent on the main connection, and
	// CallTime their time from sending to the answer, all included.
	Calls    int64
	CallTime time.Duration
	// Computes is how many graphs were sent (GRAPH_COMPUTE, or
	// GRAPH_RECOMPUTE of a stored one), and ComputeTime the time from
	// sending each to the answer of the command after it, which waits for
	// the worker to finish: the graph's decoding, building and computing
	// there, and the round trip.
	Computes    int64
	ComputeTime time.Duration
	// Serialize is the head's time turning ggml graphs into messages.
	Serialize time.Duration

	inCompute time.Duration // of CallTime, within ComputeTime
}

// OtherCallTime is the time in commands that neither sent a graph nor
// waited for one: the round trips of the tensor reads and writes around
// the computes, and any other command.
func (s CallStats) OtherCallTime() time.Duration { return s.CallTime - s.inCompute }

// Sub is s minus an earlier snapshot t.
func (s CallStats) Sub(t CallStats) CallStats {
	return CallStats{Calls: s.Calls - t.Calls, CallTime: s.CallTime - t.CallTime, Computes: s.Computes - t.Computes,
		ComputeTime: s.ComputeTime - t.ComputeTime, Serialize: s.Serialize - t.Serialize, inCompute: s.inCompute - t.inCompute}
}

// callStats is a node's running account behind CallStats.
type callStats struct {
	calls, callNs, computes, computeNs, serializeNs atomic.Int64
	inComputeNs                                     atomic.Int64 // call time inside ComputeTime
}

func (c *callStats) snapshot() CallStats {
	return CallStats{Calls: c.calls.Load(), CallTime: time.Duration(c.callNs.Load()), Computes: c.computes.Load(),
		ComputeTime: time.Duration(c.computeNs.Load()), Serialize: time.Duration(c.serializeNs.Load()),
		inCompute: time.Duration(c.inComputeNs.Load())}
}

// call counts one command of duration d; computeEnd is the time since the
// graph it waited for was sent (0 when it waited for none).
func (c *callStats) call(cmd rpc.Cmd, d, computeEnd time.Duration) {
	c.calls.Add(1)
	c.callNs.Add(int64(d))
	if cmd == rpc.CmdGraphCompute {
		c.computes.Add(1)
		c.inComputeNs.Add(int64(d))
	}
	if computeEnd > 0 {
		c.computeNs.Add(int64(computeEnd))
		c.inComputeNs.Add(int64(d))
	}
}

// Stats is where this node's commands spent the head's time so far.
func (n *Node) Stats() CallStats { return n.stats.snapshot() }
