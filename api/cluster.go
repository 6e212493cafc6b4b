package api

import "time"

// ClusterView is a head's GET /v1/cluster: its state and each worker's.
type ClusterView struct {
	State   string          `json:"state"` // loading, ok, degraded, error
	Error   string          `json:"error,omitempty"`
	Workers []ClusterWorker `json:"workers"`
	// LocalLayers and Plan are the split of the loaded model: layers kept
	// on the head, and each worker's share (absent before a plan).
	LocalLayers *int        `json:"local_layers,omitempty"`
	Plan        []PlanShare `json:"plan,omitempty"`
}

// ClusterWorker is one worker as the head sees it.
type ClusterWorker struct {
	Addr        string    `json:"addr"`
	Admin       string    `json:"admin,omitempty"`
	State       string    `json:"state"` // up, down
	DownSince   time.Time `json:"down_since,omitzero"`
	Error       string    `json:"error,omitempty"`
	Devices     []string  `json:"devices"`
	Layers      int       `json:"layers"`       // layers the head placed there
	PlacedBytes int64     `json:"placed_bytes"` // bytes in buffers the head holds there
	Buffers     int64     `json:"buffers"`
}

// PlanShare is what the plan expects of one worker.
type PlanShare struct {
	Endpoint
	Fraction float64 `json:"fraction"`
	Layers   int     `json:"layers"`
	Output   bool    `json:"output_layer"`
	Weights  uint64  `json:"weight_bytes"`
	KV       uint64  `json:"kv_bytes"`
	Compute  uint64  `json:"compute_bytes"`
	Need     uint64  `json:"need_bytes"`
	Free     uint64  `json:"free_bytes"`
}
