// Package computetest lets a test binary double as box worker's compute
// process, and holds the one fault the leak checker's tests need. It is
// for tests only: the shipped binary runs package compute directly, so the
// release path has no fault branch.
package computetest

import (
	"os"
	"testing"
	"time"

	"github.com/boxproj/box/worker/compute"
)

const (
	envChild = "BOX_COMPUTE_CHILD"
	envFault = "BOX_TEST_FAULT"
)

// LeakOnDisconnect is the fault that reproduces the bug box exists to fix:
// when its connection ends, the compute process does not exit, so the
// memory it holds (host or device) is never given back.
const LeakOnDisconnect = "leak-on-disconnect"

// Main runs m, or, when this test binary was started as a compute process,
// that process.
func Main(m *testing.M) {
	MaybeRun()
	os.Exit(m.Run())
}

// MaybeRun runs the compute process and exits when this test binary was
// started as one; otherwise it returns. For a TestMain that does more
// than m.Run, call it first.
func MaybeRun() {
	if os.Getenv(envChild) == "1" {
		os.Exit(Run(os.Args[1:]))
	}
}

// Executable is the test binary, to be started as a compute process with
// Env(fault).
func Executable() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// Env is the environment that makes the test binary a compute process,
// with fault ("" for none).
func Env(fault string) []string { return append([]string{envChild + "=1"}, FaultEnv(fault)...) }

// FaultEnv is the environment that gives a test binary's compute processes
// fault, for a binary that starts them itself (the box command's tests).
func FaultEnv(fault string) []string {
	if fault == "" {
		return nil
	}
	return []string{envFault + "=" + fault}
}

// Run runs a compute process with the arguments of package compute's Main.
// Under LeakOnDisconnect a serving process outlives its connection,
// holding everything, until it is killed.
func Run(args []string) int {
	code := compute.Main(args, os.Stdout, os.Stderr)
	if os.Getenv(envFault) == LeakOnDisconnect && len(args) == 1 && args[0] == "serve" {
		os.Stderr.WriteString("FAULT INJECTION: this compute process keeps its memory after its connection ended (tests only)\n")
		for {
			time.Sleep(time.Hour)
		}
	}
	return code
}
