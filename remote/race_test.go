//go:build race

package remote_test

// The race detector slows Go code (and the workers' compute processes,
// which are this test binary) several times over; time bounds scale by it.
const raceFactor = 10
