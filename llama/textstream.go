package llama

import "strings"

// textStream turns token pieces into text that is safe to show as it comes:
// complete UTF-8 only (byte tokens split characters), and nothing that could
// still turn out to be the start of a stop string.
type textStream struct {
	stops   []string
	pending []byte // an unfinished UTF-8 sequence
	held    string // text that may be the start of a stop string
}

// push adds a piece and returns the text that can be released, and whether
// a stop string was reached (the stop string itself is never released).
func (s *textStream) push(piece []byte) (string, bool) {
	s.pending = append(s.pending, piece...)
	cut := completePrefix(s.pending)
	text := s.held + strings.ToValidUTF8(string(s.pending[:cut]), "\uFFFD")
	s.pending = append(s.pending[:0], s.pending[cut:]...)
	s.held = ""

	first := -1
	for _, stop := range s.stops {
		if i := strings.Index(text, stop); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		s.pending = s.pending[:0]
		return text[:first], true
	}
	keep := 0
	for _, stop := range s.stops {
		for k := min(len(stop)-1, len(text)); k > keep; k-- {
			if strings.HasSuffix(text, stop[:k]) {
				keep = k
				break
			}
		}
	}
	s.held = text[len(text)-keep:]
	return text[:len(text)-keep], false
}

// flush releases whatever is held at the end of generation.
func (s *textStream) flush() string {
	out := s.held + strings.ToValidUTF8(string(s.pending), "\uFFFD")
	s.held, s.pending = "", s.pending[:0]
	return out
}

// completePrefix returns the length of b without a trailing, still
// incomplete UTF-8 sequence. Invalid bytes elsewhere count as complete (they
// become U+FFFD).
func completePrefix(b []byte) int {
	// A sequence is at most 4 bytes, so only the last 3 can be unfinished.
	for back := 1; back <= 3 && back <= len(b); back++ {
		c := b[len(b)-back]
		if c < 0x80 {
			return len(b)
		}
		if c >= 0xC0 { // a leading byte
			need := 0
			switch {
			case c >= 0xF0:
				need = 4
			case c >= 0xE0:
				need = 3
			default:
				need = 2
			}
			if back < need {
				return len(b) - back
			}
			return len(b)
		}
	}
	return len(b)
}
