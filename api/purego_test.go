package api

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The clients of box's APIs (boxtop, box probe's client side, leakcheck, box
// chat) and this package build without cgo: nothing they import is a cgo
// package outside the standard library (whose net, os/user and runtime/cgo
// have pure-Go fallbacks), and with CGO_ENABLED=0 every one of their
// dependencies still has Go files to build. ggml, llama and go-nvml reach
// them only as functions cmd/box injects (tui.Config.NVML,
// leakcheck.Options.NVML).
func TestClientsArePureGo(t *testing.T) {
	pkgs := []string{"github.com/boxproj/box/api", "github.com/boxproj/box/tui", "github.com/boxproj/box/probe",
		"github.com/boxproj/box/leakcheck", "github.com/boxproj/box/chat", "github.com/boxproj/box/worker"}
	list := func(cgo string, format string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"list", "-e", "-deps", "-f", format}, pkgs...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list (CGO_ENABLED=%s): %v\n%s", cgo, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := list("1", `{{if and .CgoFiles (not .Standard)}}{{.ImportPath}}{{end}}`); out != "" {
		t.Errorf("cgo packages among the clients' dependencies:\n%s", out)
	}
	if out := list("0", `{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}`); out != "" {
		t.Errorf("with CGO_ENABLED=0:\n%s", out)
	}
}
