package synth

import (
	"fmt"
)

// Token types (enum llama_token_type as stored in tokenizer.ggml.token_type).
const (
	TokenNormal  int32 = 1
	TokenUnknown int32 = 2
	TokenControl int32 = 3
	TokenByte    int32 = 6
)

// Fixed token ids.
const (
	UnkID      = 0
	BOSID      = 1
	EOSID      = 2               // <|endoftext|>, an end-of-generation token
	FirstByte  = 3               // <0x00>
	ImStartID  = FirstByte + 256 // <|im_start|>
	ImEndID    = ImStartID + 1   // <|im_end|>, also the end-of-turn token
	SpaceID    = ImEndID + 1     // "▁", the first NORMAL token
	MinVocab   = SpaceID + 1     // 262
	firstPiece = SpaceID
	spaceMark  = "\u2581" // SentencePiece's visible space "▁"
	chatML     = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

// ChatTemplate is the ChatML Jinja template stored in tokenizer.chat_template.
const ChatTemplate = chatML

// Vocab is an SPM vocabulary: pieces, scores and token types by id.
type Vocab struct {
	Tokens []string
	Scores []float32
	Types  []int32
}

// common English words, in rough frequency order, emitted as "▁word" pieces.
var commonWords = []string{
	"the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
	"with", "his", "they", "I", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word",
	"but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an",
	"each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many",
	"then", "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has",
	"look", "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than",
	"first", "water", "been", "call", "who", "its", "now", "find", "long", "down", "day", "did", "get",
	"come", "made", "may", "part", "over", "new", "say", "just", "know", "year", "good", "yes", "very",
	"The", "A", "In", "It", "This", "What", "How", "Why", "Hello", "hello", "world", "World", "quick",
	"brown", "fox", "jumps", "lazy", "dog", "model", "token", "test", "data", "user", "assistant",
	"system", "help", "please", "thank", "thanks", "answer", "question", "code", "box", "llama",
}

// NewVocab builds the deterministic vocabulary of n tokens (n >= MinVocab):
//
//	0 <unk> (UNKNOWN), 1 <s>, 2 <|endoftext|> (CONTROL), 3..258 <0x00>..<0xFF> (BYTE),
//	259 <|im_start|>, 260 <|im_end|> (CONTROL), 261 "▁" (NORMAL),
//
// "▁" is part of the minimum vocabulary: without it a space would become the
// three byte tokens of U+2581, which detokenize to a literal "▁" instead of a
// space. Larger vocabularies continue with NORMAL pieces: printable ASCII,
// "▁"+letter or digit, "▁"+common words, two-letter, "▁"+two-letter,
// three-letter, "▁"+three-letter and four-letter lowercase pieces, all distinct. NORMAL scores decrease with the
// id (shorter, earlier pieces score higher); the others score 0.
func NewVocab(n int) (*Vocab, error) {
	if n < MinVocab || n > MaxVocab {
		return nil, fmt.Errorf("synth: vocab size %d, want %d to %d", n, MinVocab, MaxVocab)
	}
	v := &Vocab{Tokens: make([]string, 0, n), Scores: make([]float32, 0, n), Types: make([]int32, 0, n)}
	add := func(s string, typ int32, score float32) {
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, typ)
		v.Scores = append(v.Scores, score)
	}
	add("<unk>", TokenUnknown, 0)
	add("<s>", TokenControl, 0)
	// llama.cpp ends generation on the tokens it knows by name
	// (<|endoftext|>, <|im_end|>, ...) and warns when the EOS token is not
	// one of them, as "</s>" is not.
	add("<|endoftext|>", TokenControl, 0)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), TokenByte, 0)
	}
	add("<|im_start|>", TokenControl, 0)
	add("<|im_end|>", TokenControl, 0)

	seen := make(map[string]bool, n)
	for _, t := range v.Tokens {
		seen[t] = true
	}
	full := func() bool { return len(v.Tokens) >= n }
	piece := func(s string) bool {
		if full() {
			return false
		}
		if !seen[s] {
			seen[s] = true
			k := len(v.Tokens) - firstPiece
			add(s, TokenNormal, -float32(k)/8)
		}
		return !full()
	}
	const lower = "abcdefghijklmnopqrstuvwxyz"
	const letters = lower + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	gen := func() {
		if !piece(spaceMark) {
			return
		}
		for c := byte(0x21); c < 0x7f; c++ {
			if !piece(string(c)) {
				return
			}
		}
		for i := range len(letters) {
			if !piece(spaceMark + letters[i:i+1]) {
				return
			}
		}
		for _, w := range commonWords {
			if !piece(spaceMark + w) {
				return
			}
		}
		for _, prefix := range []string{"", spaceMark} {
			for i := range len(lower) {
				for j := range len(lower) {
					if !piece(prefix + string([]byte{lower[i], lower[j]})) {
						return
					}
				}
			}
		}
		for _, prefix := range []string{"", spaceMark} {
			for i := range len(lower) {
				for j := range len(lower) {
					for k := range len(lower) {
						if !piece(prefix + string([]byte{lower[i], lower[j], lower[k]})) {
							return
						}
					}
				}
			}
		}
		for i := range len(lower) {
			for j := range len(lower) {
				for k := range len(lower) {
					for l := range len(lower) {
						if !piece(string([]byte{lower[i], lower[j], lower[k], lower[l]})) {
							return
						}
					}
				}
			}
		}
	}
	gen()
	if !full() {
		return nil, fmt.Errorf("synth: internal error: generated only %d of %d tokens", len(v.Tokens), n)
	}
	return v, nil
}
