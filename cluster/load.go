package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
)

// ParseSplit reads a --tensor-split list: non-negative shares, comma-
// separated ("1,3"); empty gives none (the split by free memory).
func ParseSplit(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--tensor-split %q: want non-negative numbers like 1,3", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// LoadOptions configure Load.
type LoadOptions struct {
	PlanOptions
	// Model are the head's own parameters; Load sets the devices, tensor
	// split, GPU layers and failure check from the plan.
	Model llama.ModelParams
	// IgnoreFit loads even when the plan says a share does not fit (tests
	// that make a worker fail mid-load).
	IgnoreFit bool
	// Planned, when set, is told the plan before the load starts.
	Planned func(*Plan)
}

// Load is the head's plan → load sequence over connected workers, shared by
// box serve and box bench: plan the model at path, then call load with the
// plan's parameters (load is llama.LoadModel of path, or a caller's
// function that also makes contexts). When the plan refuses or the load
// fails, every worker connection is closed, so every worker is back to 0
// bytes (all or nothing); the caller reconnects before trying again.
func Load[T any](ctx context.Context, c *Cluster, path string, o LoadOptions, load func(context.Context, llama.ModelParams) (T, error)) (T, *Plan, error) {
	var zero T
	plan, err := c.Plan(ctx, path, o.PlanOptions)
	if err != nil && (!o.IgnoreFit || plan == nil) {
		// Nothing was allocated: close the connections all the same, so a
		// refused start leaves no state on any worker.
		c.Close()
		return zero, plan, err
	}
	if o.Planned != nil {
		o.Planned(plan)
	}
	p := o.Model
	p.Devices, p.TensorSplit, p.GPULayers, p.Check = plan.Devices, plan.TensorSplit, plan.GPULayers, c.Err
	// The weights go to all workers at once, from the head's own mapping
	// of the file, while llama.cpp's loader goes on; the model's first
	// check waits for them (their failures fail a node, as before).
	up, err := remote.StartUpload(path, c.nodes, c.log)
	if err != nil {
		c.log.Debug("uploading synchronously", "err", err)
	} else {
		defer up.Wait()
		p.Check = func() error {
			up.Wait()
			return c.Err()
		}
	}
	v, err := load(ctx, p)
	if err != nil {
		c.Close()
		return zero, plan, err
	}
	// Weights a cold worker cache missed went unhashed: their hashes are
	// worked out from the file now, off the load's path.
	remote.HashFileInBackground(path, c.log)
	return v, plan, nil
}
