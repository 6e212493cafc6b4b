package llama

import (
	"strings"
	"testing"
)

func TestTextStream(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		want    []string // released after each push
		stopped int      // index of the push that hits a stop, -1 if none
		flush   string
	}{
		{name: "plain", pieces: []string{"ab", "c"}, want: []string{"ab", "c"}, stopped: -1},
		{name: "utf8 split over byte tokens", pieces: []string{"\xe6", "\x97", "\xa5x"}, want: []string{"", "", "日x"}, stopped: -1},
		{name: "emoji split", pieces: []string{"a\xf0\x9f", "\x8e\x89"}, want: []string{"a", "🎉"}, stopped: -1},
		{name: "invalid byte becomes replacement", pieces: []string{"\xffa"}, want: []string{"\uFFFDa"}, stopped: -1},
		{name: "unfinished at end is flushed", pieces: []string{"a\xe6\x97"}, want: []string{"a"}, stopped: -1, flush: "\uFFFD"},
		{name: "stop inside a piece", stops: []string{"END"}, pieces: []string{"abENDcd"}, want: []string{"ab"}, stopped: 0},
		{name: "stop across pieces is held back", stops: []string{"END"}, pieces: []string{"abE", "N", "Dxx"}, want: []string{"ab", "", ""}, stopped: 2},
		{name: "false start released", stops: []string{"END"}, pieces: []string{"abE", "Nx"}, want: []string{"ab", "ENx"}, stopped: -1},
		{name: "held text flushed at end", stops: []string{"END"}, pieces: []string{"abEN"}, want: []string{"ab"}, stopped: -1, flush: "EN"},
		{name: "earliest of two stops", stops: []string{"yy", "x"}, pieces: []string{"ayyx"}, want: []string{"a"}, stopped: 0},
		{name: "stop made of multibyte", stops: []string{"日本"}, pieces: []string{"a日", "\xe6\x9c", "\xac"}, want: []string{"a", "", ""}, stopped: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &textStream{stops: tc.stops}
			stoppedAt := -1
			for i, p := range tc.pieces {
				got, stopped := s.push([]byte(p))
				if got != tc.want[i] {
					t.Fatalf("push %d (%q): released %q, want %q", i, p, got, tc.want[i])
				}
				if stopped {
					stoppedAt = i
					break
				}
			}
			if stoppedAt != tc.stopped {
				t.Fatalf("stopped at push %d, want %d", stoppedAt, tc.stopped)
			}
			if stoppedAt < 0 {
				if got := s.flush(); got != tc.flush {
					t.Fatalf("flush = %q, want %q", got, tc.flush)
				}
			}
		})
	}
}

// Whatever the split, the released text is the input with stops honoured.
func TestTextStreamAnySplit(t *testing.T) {
	text := "héllo wörld 日本語 🎉 STOP tail"
	for cut1 := 0; cut1 <= len(text); cut1++ {
		for _, cut2 := range []int{cut1, (cut1 + len(text)) / 2, len(text)} {
			s := &textStream{stops: []string{"STOP"}}
			var out strings.Builder
			stopped := false
			for _, p := range []string{text[:cut1], text[cut1:cut2], text[cut2:]} {
				got, st := s.push([]byte(p))
				out.WriteString(got)
				if st {
					stopped = true
					break
				}
			}
			if !stopped {
				t.Fatalf("cuts %d,%d: stop not found", cut1, cut2)
			}
			if want := "héllo wörld 日本語 🎉 "; out.String() != want {
				t.Fatalf("cuts %d,%d: got %q want %q", cut1, cut2, out.String(), want)
			}
		}
	}
}
