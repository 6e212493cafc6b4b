package cluster

import (
	"context"

	"github.com/boxproj/box/llama"
)

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
	v, err := load(ctx, p)
	if err != nil {
		c.Close()
		return zero, plan, err
	}
	return v, plan, nil
}
