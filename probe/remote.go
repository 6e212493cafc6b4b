package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
)

// Admin probes a box worker through its admin API (GET /v1/node and GET
// /v1/connections) with a.
func Admin(ctx context.Context, a api.Client, base string) Node {
	base = api.NormalizeURL(base)
	n := Node{Name: base, Kind: KindAdmin, Address: base, Devices: []Device{}}
	info, err := a.Node(ctx, base)
	if err != nil {
		n.Status, n.Error = "unreachable", describe(err)
		return n
	}
	conns, err := a.Connections(ctx, base)
	if err != nil {
		n.Status, n.Error = "unreachable", "connections: "+describe(err)
		return n
	}
	return FromAdmin(n, info, conns)
}

// FromAdmin fills n from a worker's /v1/node and /v1/connections answers.
func FromAdmin(n Node, info api.NodeInfo, conns []api.ConnInfo) Node {
	n.Reachable, n.Status = true, "ok"
	n.Version, n.Protocol = info.Version, info.Protocol
	n.Connections, n.BoundBytes = info.Connections, info.BoundBytes
	n.Devices = []Device{}
	for _, d := range info.Devices {
		bound := d.BoundBytes
		others := sub(sub(d.MemoryTotal, d.MemoryFree), bound)
		n.Devices = append(n.Devices, Device{Index: d.Index, Name: d.Name, Description: d.Description, Type: d.Type,
			Source: SourceAdmin, MemoryTotal: d.MemoryTotal, MemoryFree: d.MemoryFree, BoundBytes: &bound,
			UsedByOthers: &others, MaxMemory: d.MaxMemory})
	}
	for _, c := range conns {
		n.Conns = append(n.Conns, Conn{ID: c.ID, Peer: c.Peer, State: string(c.State), Since: c.Since,
			LastActivity: c.LastActivity, Bytes: c.Bytes, Buffers: len(c.Buffers)})
	}
	return n
}

// RPC probes a ggml RPC endpoint through the protocol itself: HELLO,
// DEVICE_COUNT and GET_DEVICE_MEMORY for each device. It works against a box
// worker and against llama.cpp's rpc-server. An endpoint that speaks another
// protocol version is reachable, with Protocol set and Error saying why box
// cannot use it. The probe holds a connection only for its own duration.
func RPC(ctx context.Context, addr string) Node {
	n := Node{Name: addr, Kind: KindRPC, Address: addr, Devices: []Device{}}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	c, err := rpc.Dial(ctx, addr, rpc.WithHandshakeTimeout(timeout))
	if err != nil {
		var ve *rpc.VersionError
		if errors.As(err, &ve) {
			n.Reachable, n.Status = true, "incompatible"
			n.Protocol = fmt.Sprintf("%d.%d.%d", ve.Major, ve.Minor, ve.Patch)
			n.Error = fmt.Sprintf("speaks ggml RPC %s; box needs %d.%d.%d", n.Protocol, rpc.ProtoMajor, rpc.ProtoMinor, rpc.ProtoPatch)
			return n
		}
		n.Status, n.Error = "unreachable", describe(err)
		if errors.Is(err, context.DeadlineExceeded) {
			n.Error += " (an rpc-server serving another client accepts but does not answer HELLO)"
		}
		return n
	}
	defer c.Close()
	ma, mi, pa := c.Version()
	n.Protocol = fmt.Sprintf("%d.%d.%d", ma, mi, pa)
	count, err := c.DeviceCount(ctx)
	if err != nil {
		n.Reachable, n.Status, n.Error = true, "error", "DEVICE_COUNT: "+describe(err)
		return n
	}
	for i := uint32(0); i < count; i++ {
		free, total, err := c.GetDeviceMemory(ctx, i)
		if err != nil {
			n.Reachable, n.Status, n.Error = true, "error", fmt.Sprintf("GET_DEVICE_MEMORY %d: %s", i, describe(err))
			return n
		}
		n.Devices = append(n.Devices, Device{Index: int(i), Name: fmt.Sprintf("RPC%d", i), Source: SourceRPC,
			MemoryTotal: total, MemoryFree: free})
	}
	n.Reachable, n.Status = true, "ok"
	return n
}

// describe shortens the usual network errors to words.
func describe(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	}
	return err.Error()
}
