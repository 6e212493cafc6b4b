package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Token is a vocabulary id.
type Token = int32

// Tokenize turns text into tokens. addSpecial adds BOS (and EOS) as the
// model's metadata asks; parseSpecial lets control tokens such as
// <|im_start|> in text become their ids (wanted for templated prompts, not
// for user text).
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	if len(text) > 1<<30 {
		return nil, errors.New("tokenize: text too long")
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	n := len(text) + 2
	for attempt := 0; attempt < 2; attempt++ {
		buf := make([]C.llama_token, n)
		got := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), &buf[0], C.int32_t(n), C.bool(addSpecial), C.bool(parseSpecial))
		if got >= 0 {
			out := make([]Token, int(got))
			for i := range out {
				out[i] = Token(buf[i])
			}
			return out, nil
		}
		if got == C.INT32_MIN {
			return nil, errors.New("tokenize: result too large")
		}
		n = int(-got)
	}
	return nil, errors.New("tokenize: buffer size mismatch")
}

// Piece returns the bytes a token stands for. They may be part of a UTF-8
// sequence (byte tokens), so callers that stream text must reassemble them.
// Control tokens render as nothing unless special is set.
func (m *Model) Piece(tok Token, special bool) []byte {
	buf := make([]byte, 64)
	for {
		n := C.llama_token_to_piece(m.vocab, C.llama_token(tok), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
		if n >= 0 {
			return buf[:n]
		}
		buf = make([]byte, int(-n))
	}
}

// Detokenize turns tokens back into text; special control tokens are dropped.
func (m *Model) Detokenize(toks []Token) string {
	var out []byte
	for _, t := range toks {
		out = append(out, m.Piece(t, false)...)
	}
	return string(out)
}

// IsEOG reports whether tok ends generation (EOS, EOT, ...).
func (m *Model) IsEOG(tok Token) bool { return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(tok))) }

// BOS returns the beginning-of-sequence token.
func (m *Model) BOS() Token { return Token(C.llama_vocab_bos(m.vocab)) }

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string
	Content string
}

// FallbackTemplate is used when the model carries no chat template.
const FallbackTemplate = "chatml"

// ChatTemplate returns the model's chat template, or "" when it has none.
func (m *Model) ChatTemplate() string {
	t := C.llama_model_chat_template(m.m, nil)
	if t == nil {
		return ""
	}
	return C.GoString(t)
}

// ApplyChatTemplate renders msgs with the model's template (or the built-in
// fallback) and, with addAssistant, the opening of the assistant's turn.
func (m *Model) ApplyChatTemplate(msgs []ChatMessage, addAssistant bool) (string, error) {
	if len(msgs) == 0 {
		return "", errors.New("chat template: no messages")
	}
	tmpl := m.ChatTemplate()
	if tmpl == "" {
		tmpl = FallbackTemplate
	}
	return applyTemplate(tmpl, msgs, addAssistant)
}

func applyTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))

	// Everything handed to C lives in C memory, freed on return.
	cmsgs := (*C.struct_llama_chat_message)(C.calloc(C.size_t(len(msgs)), C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{}))))
	defer C.free(unsafe.Pointer(cmsgs))
	arr := unsafe.Slice(cmsgs, len(msgs))
	total := 0
	for i, msg := range msgs {
		arr[i].role = C.CString(msg.Role)
		arr[i].content = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for i := range arr {
			C.free(unsafe.Pointer(arr[i].role))
			C.free(unsafe.Pointer(arr[i].content))
		}
	}()

	n := 2*total + 256
	for attempt := 0; attempt < 2; attempt++ {
		buf := (*C.char)(C.malloc(C.size_t(n)))
		got := C.llama_chat_apply_template(ctmpl, cmsgs, C.size_t(len(msgs)), C.bool(addAssistant), buf, C.int32_t(n))
		if got < 0 {
			C.free(unsafe.Pointer(buf))
			return "", fmt.Errorf("chat template not supported by llama.cpp (%.40q)", tmpl)
		}
		if int(got) <= n {
			s := C.GoStringN(buf, got)
			C.free(unsafe.Pointer(buf))
			return s, nil
		}
		C.free(unsafe.Pointer(buf))
		n = int(got)
	}
	return "", errors.New("chat template: output size changed between calls")
}

// Vocabulary types, as llama.cpp names them.
const (
	VocabSPM = int(C.LLAMA_VOCAB_TYPE_SPM)
	VocabBPE = int(C.LLAMA_VOCAB_TYPE_BPE)
	VocabWPM = int(C.LLAMA_VOCAB_TYPE_WPM)
)

// VocabType is the tokenizer kind (VocabSPM, VocabBPE, ...).
func (m *Model) VocabType() int { return int(C.llama_vocab_type(m.vocab)) }

// MaxPieceLen is the longest byte piece of any token, control tokens
// rendered. A text of n bytes cannot tokenize to fewer than
// n / max(MaxPieceLen, 4) tokens with an SPM or BPE vocabulary (an unknown
// character, at most 4 bytes, becomes at least one token), which lets a
// caller refuse an oversized prompt without tokenizing it. It walks the
// vocabulary once and remembers the answer.
func (m *Model) MaxPieceLen() int {
	m.pieceOnce.Do(func() {
		buf := make([]byte, 256)
		for t := 0; t < m.VocabSize(); t++ {
			n := C.llama_token_to_piece(m.vocab, C.llama_token(t), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(true))
			l := int(n)
			if l < 0 {
				l = -l // the piece is longer than buf: -n is its length
			}
			m.maxPiece = max(m.maxPiece, l)
		}
	})
	return m.maxPiece
}
