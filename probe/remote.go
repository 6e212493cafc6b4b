package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
)

// AdminClient speaks a box worker's admin API and a head's /v1/cluster.
// The zero value uses http.DefaultClient.
type AdminClient struct {
	HTTP *http.Client
	// Token is the workers' admin token (api.ClientToken finds it); it is
	// sent to worker admin APIs only.
	Token string
}

func (a AdminClient) hc() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return http.DefaultClient
}

// NormalizeURL adds http:// to a bare host:port and drops a trailing slash.
func NormalizeURL(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	if u != "" && !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}

func (a AdminClient) do(ctx context.Context, method, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error any `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != nil {
			msg = fmt.Sprint(e.Error)
		}
		return &HTTPError{Status: resp.StatusCode, Msg: msg}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: %v", method, url, err)
	}
	return nil
}

// HTTPError is a non-200 answer.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg) }

// Node is GET {base}/v1/node.
func (a AdminClient) Node(ctx context.Context, base string) (worker.NodeInfo, error) {
	var n worker.NodeInfo
	err := a.do(ctx, "GET", NormalizeURL(base)+"/v1/node", &n)
	return n, err
}

// Connections is GET {base}/v1/connections.
func (a AdminClient) Connections(ctx context.Context, base string) ([]worker.ConnInfo, error) {
	var c struct {
		Connections []worker.ConnInfo `json:"connections"`
	}
	err := a.do(ctx, "GET", NormalizeURL(base)+"/v1/connections", &c)
	return c.Connections, err
}

// Events is GET {base}/v1/events?after=N.
func (a AdminClient) Events(ctx context.Context, base string, after uint64) ([]worker.Event, error) {
	var e struct {
		Events []worker.Event `json:"events"`
	}
	err := a.do(ctx, "GET", fmt.Sprintf("%s/v1/events?after=%d", NormalizeURL(base), after), &e)
	return e.Events, err
}

// Close is POST {base}/v1/connections/{id}/close: the worker frees the
// connection's buffers before it answers.
func (a AdminClient) Close(ctx context.Context, base string, id uint64) error {
	return a.do(ctx, "POST", fmt.Sprintf("%s/v1/connections/%d/close", NormalizeURL(base), id), nil)
}

// ClusterWorker is one worker in a head's GET /v1/cluster (the fields of
// cluster.NodeView that a probe needs).
type ClusterWorker struct {
	Addr        string    `json:"addr"`
	Admin       string    `json:"admin,omitempty"`
	State       string    `json:"state"`
	DownSince   time.Time `json:"down_since,omitzero"`
	Error       string    `json:"error,omitempty"`
	Devices     []string  `json:"devices"`
	Layers      int       `json:"layers"`
	PlacedBytes int64     `json:"placed_bytes"`
	Buffers     int64     `json:"buffers"`
}

// Cluster is a head's GET /v1/cluster.
type Cluster struct {
	State   string          `json:"state"`
	Error   string          `json:"error,omitempty"`
	Workers []ClusterWorker `json:"workers"`
}

// Cluster is GET {head}/v1/cluster.
func (a AdminClient) Cluster(ctx context.Context, head string) (Cluster, error) {
	var c Cluster
	// The workers' token is not the head's business.
	err := AdminClient{HTTP: a.HTTP}.do(ctx, "GET", NormalizeURL(head)+"/v1/cluster", &c)
	return c, err
}

// Admin probes a box worker through its admin API (GET /v1/node and GET
// /v1/connections) with a.
func Admin(ctx context.Context, a AdminClient, base string) Node {
	base = NormalizeURL(base)
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
func FromAdmin(n Node, info worker.NodeInfo, conns []worker.ConnInfo) Node {
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
