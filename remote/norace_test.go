//go:build !race

package remote_test

// raceFactor scales time bounds (see race_test.go).
const raceFactor = 1
