//go:build race

package serve

// The race detector slows Go code several times over; the explicit time
// bounds the issue asks for are scaled by this under -race.
const raceFactor = 10
