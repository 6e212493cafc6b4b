package main

import (
	"slices"
	"testing"
)

func TestBackendsFlag(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		rest []string
		dir  string
	}{
		{[]string{"box", "worker", "--listen", "x"}, []string{"box", "worker", "--listen", "x"}, ""},
		{[]string{"box", "--backends", "/l", "serve"}, []string{"box", "serve"}, "/l"},
		{[]string{"box", "serve", "--backends=/l", "--demo"}, []string{"box", "serve", "--demo"}, "/l"},
		{[]string{"box", "serve", "--", "--backends", "x"}, []string{"box", "serve", "--", "--backends", "x"}, ""},
	} {
		rest, dir, err := backendsFlag(tc.in)
		if err != nil || dir != tc.dir || !slices.Equal(rest, tc.rest) {
			t.Errorf("%q: %q %q %v", tc.in, rest, dir, err)
		}
	}
	if _, _, err := backendsFlag([]string{"box", "serve", "--backends"}); err == nil {
		t.Error("--backends without a directory")
	}
	if c := command([]string{"--x", "probe", "--json"}); c != "probe" {
		t.Errorf("command %q", c)
	}
}
