package remote

import (
	"errors"
	"testing"
	"time"
)

func TestAnswerChecks(t *testing.T) {
	tests := []struct {
		name string
		err  error
		bad  bool
	}{
		{"alignment 32", checkDevice(0, 32, 1<<40), false},
		{"alignment 3", checkDevice(0, 3, 1<<40), true},
		{"alignment 0", checkDevice(0, 0, 1<<40), true},
		{"alignment 2^21", checkDevice(0, 1<<21, 1<<40), true},
		{"max size 4 KiB", checkDevice(0, 32, 4096), true},
		{"allocation as asked", checkAlloc(0, 1000, 1024, 0x1000, 32), false},
		{"allocation smaller", checkAlloc(0, 1000, 999, 0x1000, 32), true},
		{"base null", checkAlloc(0, 1000, 1000, 0, 32), true},
		{"base unaligned", checkAlloc(0, 1000, 1000, 0x1003, 32), true},
		{"buffer wraps", checkAlloc(0, 1000, 1<<20, ^uint64(0)-31, 32), true},
		{"memory sane", checkMemory(0, 10, 20), false},
		{"more free than total", checkMemory(0, 21, 20), true},
		{"alloc size plain", checkAllocSize(0, 0, 100), false},
		{"alloc size padded", checkAllocSize(0, 512, 100), false},
		{"alloc size smaller", checkAllocSize(0, 99, 100), true},
		{"alloc size absurd", checkAllocSize(0, 1<<40, 100), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ae *AnswerError
			if got := errors.As(tc.err, &ae); got != tc.bad {
				t.Fatalf("bad answer %v, want %v (%v)", got, tc.bad, tc.err)
			}
		})
	}
}

func TestComputeBudget(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		seen []time.Duration
		want time.Duration
	}{
		{"no history: the ceiling", nil, computeCeiling},
		{"fast computes: the floor", []time.Duration{ms, 2 * ms, 3 * ms}, computeFloor},
		{"slow computes: a multiple of the median", []time.Duration{2 * time.Second, 3 * time.Second, 100 * time.Second}, computeMult * 3 * time.Second},
		{"very slow: the ceiling", []time.Duration{time.Minute}, computeCeiling},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c computeTimes
			for _, d := range tc.seen {
				c.observe(d)
			}
			if got := c.budget(); got != tc.want {
				t.Fatalf("budget %v, want %v", got, tc.want)
			}
		})
	}
	// The ring keeps the most recent computeHistory durations.
	var c computeTimes
	for i := 0; i < computeHistory; i++ {
		c.observe(time.Hour)
	}
	for i := 0; i < computeHistory; i++ {
		c.observe(ms)
	}
	if got := c.budget(); got != computeFloor {
		t.Fatalf("after the ring turned over: %v", got)
	}
}
