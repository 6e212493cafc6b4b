//go:build !race

package serve

// raceFactor scales explicit time bounds (see race_test.go).
const raceFactor = 1
