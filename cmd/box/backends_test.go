package main

import (
	"os"
	"strings"
	"testing"

	"github.com/boxproj/box/ggml"
)

// --backends is a flag of every command, before or after the command's
// name; it is exported as BOX_BACKENDS for the processes box starts.
func TestBackendsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
	}{
		{[]string{"box", "--backends", "/l", "version"}, "/l"},
		{[]string{"box", "version", "--backends=/l"}, "/l"},
		{[]string{"box", "version", "--backends", "off"}, "off"},
		{[]string{"box", "version"}, "/from/env"},
	} {
		t.Setenv(ggml.EnvBackends, "/from/env")
		code, _, errs := runBox(tc.args...)
		if got := os.Getenv(ggml.EnvBackends); code != 0 || got != tc.env {
			t.Errorf("%q: exit %d %q, BOX_BACKENDS=%q, want %q", tc.args, code, errs, got, tc.env)
		}
	}
	if code, _, errs := runBox("box", "serve", "--backends"); code != 2 || !strings.Contains(errs, "flag needs an argument: --backends") {
		t.Errorf("--backends without a directory: exit %d, %q", code, errs)
	}
	if _, out, _ := runBox("box", "worker", "--help"); !strings.Contains(out, "Global Flags:\n      --backends string") {
		t.Errorf("worker --help does not show --backends:\n%s", out)
	}
}
