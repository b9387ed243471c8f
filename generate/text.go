package generate

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// TextOptions are the options of text generation: the decoding options and
// the stop strings.
type TextOptions struct {
	Options
	// Stop lists strings that end a sequence (--stop, each non-empty valid
	// UTF-8): the output is cut just before the first place where one of
	// them appears, and the stop string is not part of it.
	Stop []string
	// IgnoreEOS keeps decoding past end-of-sequence tokens (--ignore-eos):
	// o.EOS is not defaulted to the tokenizer's EOS token, so a sequence
	// ends only at a stop string or MaxTokens, unless o.EOS names ids.
	IgnoreEOS bool
}

// Validate reports the first option outside its domain, naming it as the
// command line spells it, with an error wrapping api.ErrConfig.
func (o TextOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	for _, s := range o.Stop {
		if s == "" || !utf8.ValidString(s) {
			return fmt.Errorf("--stop %q: want a non-empty string of valid UTF-8: %w", s, api.ErrConfig)
		}
	}
	return nil
}

// Stream generates text after each of prompts and returns it per prompt;
// the text is the decoding (tok.Decode: special tokens left out) of the new
// tokens, cut before the first stop string. emit, when not nil, gets the
// text in pieces as soon as they are final: a character whose bytes are
// split across tokens is held back until it is complete, and text that may
// still be the start of a stop string until it cannot. The pieces of a
// sequence, concatenated, are exactly the returned string; no piece is
// empty. A sequence ends at an end-of-sequence token, a stop string or
// o.MaxTokens; the others go on.
//
// Prompts are encoded with tok.EncodeFull and the post-processor's special
// tokens; padding that the tokenizer file asks for is left out (a state-space
// model cannot mask it). A prompt that encodes to no token (the empty
// string) starts from the tokenizer's EOS token, the document separator the
// models here are trained with; without one it is an error wrapping
// api.ErrNotFound. When o.EOS is empty (and o.IgnoreEOS is not set) it defaults to the tokenizer's EOS
// token, if it has one. Token ids the tokenizer does not know (a model's
// vocabulary is often padded past the tokenizer's) decode to nothing, as
// Hugging Face's decode skips them.
//
// Decoding the text costs O(new tokens) per token: each new token is
// decoded in a short window of the tokens before it, and the window's text
// is compared with what was already passed on. This gives tok.Decode of the
// whole output for decoders that change no earlier text when a token is
// appended, apart from an incomplete UTF-8 character at the end (byte-level,
// Metaspace, ByteFallback and the other decoders of the tokenizer package);
// a character still incomplete after 8 more tokens is passed on as U+FFFD.
//
// An error from emit stops all decoding and is returned, wrapped; on any
// error the returned strings hold what was emitted. ctx is checked before
// every model call, as Generate does.
func Stream(ctx context.Context, m api.Model, tok *tokenizer.Tokenizer, prompts []string, o TextOptions, emit func(seq int, piece string) error) (_ []string, err error) {
	defer api.Recover(&err)
	if tok == nil {
		return nil, fmt.Errorf("stream: no tokenizer: %w", api.ErrConfig)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	if eos := tok.Special().EOS; len(o.EOS) == 0 && eos >= 0 && !o.IgnoreEOS {
		o.EOS = []int32{int32(eos)}
	}
	ids := make([][]int32, len(prompts))
	seqs := make([]*textSeq, len(prompts))
	for i, p := range prompts {
		if ids[i], err = encodePrompt(tok, p); err != nil {
			return nil, fmt.Errorf("stream: prompt %d: %w", i, err)
		}
		seqs[i] = newTextSeq(tok, o.Stop)
	}
	pass := func(seq int, piece string) error {
		if piece == "" {
			return nil
		}
		seqs[seq].out.WriteString(piece)
		if emit != nil {
			if err := emit(seq, piece); err != nil {
				return fmt.Errorf("sequence %d: emit: %w", seq, err)
			}
		}
		return nil
	}
	onToken := func(seq int, id int32) (verdict, error) {
		piece, stop, err := seqs[seq].add(int(id))
		if err != nil {
			return endAll, fmt.Errorf("sequence %d: %w", seq, err)
		}
		if err := pass(seq, piece); err != nil {
			return endAll, err
		}
		if stop {
			return endSeq, nil
		}
		return goOn, nil
	}
	onEnd := func(seq int) error {
		piece, err := seqs[seq].finish()
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		return pass(seq, piece)
	}
	_, err = run(ctx, m, ids, o.Options, onToken, onEnd)
	texts := make([]string, len(seqs))
	for i, s := range seqs {
		texts[i] = s.out.String()
	}
	if err != nil {
		return texts, fmt.Errorf("stream: %w", err)
	}
	return texts, nil
}

// Text is Stream for one prompt: it returns the generated text, and emit,
// when not nil, gets its pieces as they become final.
func Text(ctx context.Context, m api.Model, tok *tokenizer.Tokenizer, prompt string, o TextOptions, emit func(piece string) error) (string, error) {
	var each func(int, string) error
	if emit != nil {
		each = func(_ int, piece string) error { return emit(piece) }
	}
	texts, err := Stream(ctx, m, tok, []string{prompt}, o, each)
	if len(texts) == 0 {
		return "", err
	}
	return texts[0], err
}

// encodePrompt returns the ids of a prompt, without padding; an empty one
// is the tokenizer's EOS token.
func encodePrompt(tok *tokenizer.Tokenizer, text string) ([]int32, error) {
	e, err := tok.EncodeFull(text, true)
	if err != nil {
		return nil, err
	}
	pad := tok.Special().PAD
	ids := make([]int32, 0, len(e.IDs))
	for i, id := range e.IDs {
		if id == pad && i < len(e.Special) && e.Special[i] {
			continue
		}
		ids = append(ids, int32(id))
	}
	if len(ids) == 0 {
		eos := tok.Special().EOS
		if eos < 0 {
			return nil, fmt.Errorf("%q encodes to no token, and the tokenizer has no EOS token to start from: %w", text, api.ErrNotFound)
		}
		ids = append(ids, int32(eos))
	}
	return ids, nil
}

// maxHeldTokens is how many tokens a decoded text ending with U+FFFD is
// held back for, waiting for the rest of a character (a UTF-8 character
// has 4 bytes at most, a token at least one unless it decodes to nothing).
const maxHeldTokens = 8

// textSeq turns the tokens of one sequence into final pieces of text.
type textSeq struct {
	tok   *tokenizer.Tokenizer
	stops []string
	// ids are the generated ids the tokenizer knows. ids[prefix:read] were
	// passed on and decode, on their own, to prev; ids[read:] are held.
	ids          []int
	prefix, read int
	prev         string
	pending      string // decoded text not passed on: it may start a stop string
	stopped      bool
	out          strings.Builder // the text passed on
}

func newTextSeq(tok *tokenizer.Tokenizer, stops []string) *textSeq {
	return &textSeq{tok: tok, stops: stops}
}

// add takes the next token and returns the text that became final, and
// whether a stop string ends the sequence.
func (t *textSeq) add(id int) (string, bool, error) {
	if t.stopped {
		return "", true, nil
	}
	if _, ok := t.tok.IDToToken(id); !ok {
		return "", false, nil
	}
	t.ids = append(t.ids, id)
	text, err := t.tok.Decode(t.ids[t.prefix:])
	if err != nil {
		return "", false, err
	}
	if strings.HasSuffix(text, string(utf8.RuneError)) && len(t.ids)-t.read < maxHeldTokens {
		return "", false, nil // perhaps a character cut short
	}
	piece := suffixAfter(t.prev, text)
	t.prefix, t.read = t.read, len(t.ids)
	if t.prev, err = t.tok.Decode(t.ids[t.prefix:t.read]); err != nil {
		return "", false, err
	}
	piece, stop := t.release(piece, false)
	return piece, stop, nil
}

// finish passes on everything held back, at the end of the sequence.
func (t *textSeq) finish() (string, error) {
	if t.stopped {
		return "", nil
	}
	var piece string
	if t.read < len(t.ids) {
		text, err := t.tok.Decode(t.ids[t.prefix:])
		if err != nil {
			return "", err
		}
		piece = suffixAfter(t.prev, text)
		t.prefix, t.read, t.prev = len(t.ids), len(t.ids), ""
	}
	piece, _ = t.release(piece, true)
	return piece, nil
}

// release adds piece to the pending text and returns what of it is final:
// everything before a stop string (which ends the sequence), or, without
// one, everything but the longest end that starts a stop string (at the
// end of the sequence, everything).
func (t *textSeq) release(piece string, end bool) (string, bool) {
	t.pending += piece
	if i := firstStop(t.pending, t.stops); i >= 0 {
		final := t.pending[:i]
		t.pending, t.stopped = "", true
		return final, true
	}
	keep := 0
	if !end {
		keep = stopPrefix(t.pending, t.stops)
	}
	final := t.pending[:len(t.pending)-keep]
	t.pending = t.pending[len(t.pending)-keep:]
	return final, false
}

// suffixAfter returns what text adds to prev. A decoder that changed the
// end of prev (it does not happen with the tokenizer package's decoders)
// gets the text after their longest common prefix, cut at a character.
func suffixAfter(prev, text string) string {
	if strings.HasPrefix(text, prev) {
		return text[len(prev):]
	}
	n := 0
	for n < len(prev) && n < len(text) && prev[n] == text[n] {
		n++
	}
	for n > 0 && n < len(text) && !utf8.RuneStart(text[n]) {
		n--
	}
	return text[n:]
}

// firstStop returns where the first stop string in s starts, or -1.
func firstStop(s string, stops []string) int {
	first := -1
	for _, stop := range stops {
		if i := strings.Index(s, stop); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefix returns the length of the longest end of s that is the start
// of a stop string (shorter than it). That end starts at a character, since
// a stop string starts with one.
func stopPrefix(s string, stops []string) int {
	longest := 0
	for _, stop := range stops {
		for k := min(len(stop)-1, len(s)); k > longest; k-- {
			if strings.HasSuffix(s, stop[:k]) {
				longest = k
				break
			}
		}
	}
	return longest
}
