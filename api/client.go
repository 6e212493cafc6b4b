package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client speaks a box worker's admin API and a head's /v1/cluster.
// The zero value uses http.DefaultClient.
type Client struct {
	HTTP *http.Client
	// Token is the workers' admin token (ClientToken finds it); it is
	// sent to worker admin APIs only.
	Token string
	// HeadKey is the head's API key (box serve --api-key); it is sent to
	// the head only.
	HeadKey string
}

func (a Client) hc() *http.Client {
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

func (a Client) do(ctx context.Context, method, url string, v any) error {
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
func (a Client) Node(ctx context.Context, base string) (NodeInfo, error) {
	var n NodeInfo
	err := a.do(ctx, "GET", NormalizeURL(base)+"/v1/node", &n)
	return n, err
}

// Connections is GET {base}/v1/connections.
func (a Client) Connections(ctx context.Context, base string) ([]ConnInfo, error) {
	var c struct {
		Connections []ConnInfo `json:"connections"`
	}
	err := a.do(ctx, "GET", NormalizeURL(base)+"/v1/connections", &c)
	return c.Connections, err
}

// Events is GET {base}/v1/events?after=N.
func (a Client) Events(ctx context.Context, base string, after uint64) ([]Event, error) {
	var e struct {
		Events []Event `json:"events"`
	}
	err := a.do(ctx, "GET", fmt.Sprintf("%s/v1/events?after=%d", NormalizeURL(base), after), &e)
	return e.Events, err
}

// Close is POST {base}/v1/connections/{id}/close: the worker frees the
// connection's buffers before it answers.
func (a Client) Close(ctx context.Context, base string, id uint64) error {
	return a.do(ctx, "POST", fmt.Sprintf("%s/v1/connections/%d/close", NormalizeURL(base), id), nil)
}

// Cluster is GET {head}/v1/cluster.
func (a Client) Cluster(ctx context.Context, head string) (ClusterView, error) {
	var c ClusterView
	// The workers' token is not the head's business, nor its key theirs.
	err := Client{HTTP: a.HTTP, Token: a.HeadKey}.do(ctx, "GET", NormalizeURL(head)+"/v1/cluster", &c)
	return c, err
}
