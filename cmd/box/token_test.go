package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// A real worker's admin API refuses a request without its token, and box
// probe and boxtop, which find the token as the worker made it, work; with
// a wrong token they report the node as refusing them.
func TestAdminTokenEndToEnd(t *testing.T) {
	_, _, admins := startWorkers(t, 1)
	url := "http://" + admins[0]
	if resp, err := http.Get(url + "/v1/node"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("GET /v1/node without the token: %v %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"probe", []string{"probe", "--admin", url}, 0, "ok"},
		{"probe, wrong token", []string{"probe", "--admin", url, "--admin-token", "nope"}, 1, "401"},
		{"boxtop", []string{"top", "--once", "--nodes", "w1=" + url}, 0, "1 node: 1 up"},
		{"boxtop, wrong token", []string{"top", "--once", "--nodes", "w1=" + url, "--admin-token", "nope"}, 1, "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := box(tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.want, out.String())
			}
		})
	}
}
