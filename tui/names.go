package tui

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// nameSeps are where a name may be cut: the common part is dropped at one of
// these, so what is left starts or ends at a word.
const nameSeps = ".:-_/@"

// shortNames fits names into w cells and keeps them distinct. It tries, in
// order: the names as they are; without their common suffix ("gpu-1…");
// without their common prefix ("…:50053"); without both; and last, each
// shortened from the left. The first that fits every name and keeps them
// apart wins.
func shortNames(names []string, w int) []string {
	if fits(names, w) {
		return names
	}
	pre := commonPrefix(names)
	suf := commonSuffix(names)
	var cands [][]string
	if suf > 0 {
		cands = append(cands, mapNames(names, func(s string) string { return s[:len(s)-suf] + "…" }))
	}
	if pre > 0 {
		cands = append(cands, mapNames(names, func(s string) string { return "…" + s[pre:] }))
	}
	if pre > 0 && suf > 0 {
		cands = append(cands, mapNames(names, func(s string) string {
			if pre >= len(s)-suf {
				return s
			}
			return "…" + s[pre:len(s)-suf] + "…"
		}))
	}
	for _, c := range cands {
		if fits(c, w) && distinct(c) {
			return c
		}
	}
	out := mapNames(names, func(s string) string {
		if pre > 0 && lipgloss.Width(s[pre:]) < w {
			return "…" + s[pre:]
		}
		return leftTrunc(s, w)
	})
	return out
}

func fits(names []string, w int) bool {
	for _, n := range names {
		if lipgloss.Width(n) > w {
			return false
		}
	}
	return true
}

func distinct(names []string) bool {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}

func mapNames(names []string, f func(string) string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = f(n)
	}
	return out
}

// leftTrunc keeps the last w-1 cells of s after "…".
func leftTrunc(s string, w int) string {
	sw := lipgloss.Width(s)
	if sw <= w || w < 2 {
		return s
	}
	return "…" + ansi.Cut(s, sw-(w-1), sw)
}

// commonPrefix is the length of the prefix every name shares, cut back to
// just before a separator (the separator stays, so "…:50053" reads as a
// port); 0 with fewer than two names or when nothing is shared.
func commonPrefix(names []string) int {
	if len(names) < 2 {
		return 0
	}
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	i := strings.LastIndexAny(p, nameSeps)
	if i <= 0 {
		return 0
	}
	for _, n := range names {
		if i >= len(n)-1 {
			return 0 // a name would be left as a bare separator
		}
	}
	return i
}

// commonSuffix is the length of the shared suffix, starting at a separator.
func commonSuffix(names []string) int {
	if len(names) < 2 {
		return 0
	}
	s := names[0]
	for _, n := range names[1:] {
		for !strings.HasSuffix(n, s) {
			s = s[1:]
		}
	}
	i := strings.IndexAny(s, nameSeps)
	if i < 0 {
		return 0
	}
	suf := len(s) - i
	for _, n := range names {
		if suf >= len(n)-1 {
			return 0
		}
	}
	return suf
}
