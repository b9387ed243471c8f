package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/densessm/densessm/api"
	"golang.org/x/text/unicode/norm"
)

// Streaming encode.
//
// EncodeReader cuts the text into pieces and encodes them one by one. A cut
// is only made where encoding the two sides separately provably gives the
// ids of the whole, which depends on the tokenizer; planStream works out at
// load time which cuts a tokenizer allows. There are two kinds, both
// between two characters that are not white space (Y before, X after):
//
//   - after a line break: "Y\n|X" (cutNL);
//   - before a single space: "Y| X" (cutSP).
//
// Why a cut at such a place is exact, stage by stage:
//
//  1. Added tokens. A match across the cut would hold "\nX" (cutNL) or
//     "Y " (cutSP) with X, Y not white space; a tokenizer with such an
//     added token (raw or normalized content) does not get that kind of
//     cut (spansCut). So every match lies on one side, and leftmost-longest
//     matching finds the same tokens on each side (a longer candidate that
//     would cross the cut cannot match). single_word looks at the character
//     next to a match: at the cut that is '\n' or ' ', not a word
//     character, as at the start or end of a text; only a single_word token
//     ending with '\n' or starting with ' ' would see across, and it turns
//     the kind off. lstrip and rstrip take the white space next to a match:
//     for cutNL a match starting at X would take the '\n' from the other
//     side, so X may not be the first byte of an lstrip token; for cutSP a
//     match ending at Y would take the ' ', so Y may not be the last byte of
//     an rstrip token. Elsewhere the stripped white space stops at Y or X.
//  2. Normalizer. Only normalizers that act character by character are
//     allowed: the Unicode forms, Lowercase, and Replace of literal strings
//     (Prepend and Strip act on the ends of each piece and are refused).
//     With a normalizer, Y and X must be ASCII; their images are computed
//     once (mapped) and must be single ASCII characters that are not white
//     space and that no Replace matches, and '\n' and ' ' must map to
//     themselves. With a composing form (NFC, NFKC) the character after X
//     must be ASCII too, so that X composes with nothing. '\n' and ' ' are
//     starters that compose with nothing, so the forms are the
//     concatenation of the forms of the two sides; a Replace match cannot
//     contain the cut character, Y or X.
//  3. Pre-tokenizer. Its first step (later steps of a Sequence act on each
//     piece of the first) must end a piece at the cut and start the next
//     one there, whatever follows: the GPT-2, cl100k, Qwen2 and o200k split
//     patterns (their hand-written scanners, or o200k's regex) with any
//     behaviour but Contiguous, Whitespace, WhitespaceSplit, and for cutSP
//     Metaspace with split pieces. For the patterns this follows from the
//     alternatives: runs of letters, numbers and other characters stop at
//     white space; a white-space run that is one '\n' or one ' ' between
//     non-space characters is matched alone ("\s*[\r\n]+", or "\s+" when
//     "\s+(?!\S)" fails), or, for cutSP, the space starts X's match
//     (" ?\p{L}+", "[^\r\n\p{L}\p{N}]?\p{L}+", " ?[^\s\p{L}\p{N}]+"), which is
//     where the right side starts too; " ?[^\s\p{L}\p{N}]+[\r\n]*" takes the
//     '\n' after Y but stops at X (o200k's "[\r\n/]*" would take a '/', so
//     X may not be '/' there); "[^\r\n\p{L}\p{N}]?" never takes the '\n'.
//     Every character is in some match, so the matches follow each other
//     and each is its own piece. Pre-tokenizers that add a prefix to a piece
//     (ByteLevel add_prefix_space, Metaspace) allow cutSP only: the right
//     side then starts with its space and gets no prefix, as in the whole
//     text; Metaspace's prepend_scheme "first" likewise.
//  4. Model, post-processor. BPE works on each piece on its own. The
//     post-processor's special tokens are found once, around a marker
//     sequence, and emitted at the start and the end; truncation and
//     padding make a tokenizer not stream.
//
// A cut needs only the characters around it, so cuts at several places
// compose: the pieces between them encode to the ids of the whole.

// defaultStreamChunk is how much text EncodeReader reads at a time.
const defaultStreamChunk = 1 << 20

// maxWholeInput bounds the text EncodeReader reads for a tokenizer that
// does not stream, and the text without a place to cut for one that does.
// It is a variable for the tests.
var maxWholeInput int64 = 1 << 30

// cutLookahead is how far past a cut position a cut needs to see: the
// space, X (4 bytes at most) and the byte after it.
const cutLookahead = 8

// o200kPattern is the split pattern of o200k_base as Hugging Face
// converted tokenizers write it; planStream knows its cuts. compilePattern
// spells out its case-insensitive contractions.
const o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// streamPlan says where EncodeReader may cut the text of a tokenizer.
type streamPlan struct {
	ok     bool // the tokenizer streams
	nl, sp bool // cuts after a line break, before a space
	// normalized: the tokenizer has a normalizer, so the characters next
	// to a cut must be ASCII; mapped gives the normalizer's image of each
	// ASCII byte, 0 where the byte may not be next to a cut.
	normalized bool
	mapped     [utf8.RuneSelf]byte
	// composing: the normalizer composes characters (NFC, NFKC), so the
	// byte after X must be ASCII too.
	composing bool
	// noSlash: X may not be '/' after a line break (o200k's pattern).
	noSlash bool
	// First bytes of lstrip added tokens and last bytes of rstrip added
	// tokens, as matched in the raw and in the normalized text.
	lstripRaw, lstripNorm, rstripRaw, rstripNorm [256]bool
	// prefix and suffix are the special tokens the post-processor puts
	// before and after the sequence.
	prefix, suffix []int
}

// planStream works out where the tokenizer's text may be cut.
func (t *Tokenizer) planStream() streamPlan {
	var p streamPlan
	if t.truncation != nil || t.padding != nil || t.preTokenizer == nil {
		return p
	}
	var ok bool
	if p.prefix, p.suffix, ok = specialsAround(t.postProcessor); !ok {
		return p
	}
	p.nl, p.sp, p.noSlash = preTokenizerCuts(t.preTokenizer)
	if t.alwaysTrack {
		// Metaspace with prepend_scheme "first" prepends to a piece that
		// starts the text: the right side of a cut after a line break
		// would get it. The right side of a cut before a space starts
		// with the space, which takes the replacement's place.
		p.nl = false
	}
	if t.normalizer != nil {
		steps, composing, ok := charNormalizerSteps(t.normalizer, nil)
		if !ok {
			return streamPlan{}
		}
		p.normalized, p.composing = true, composing
		if out, ok := mapChars("\n", steps); !ok || out != "\n" {
			p.nl = false
		}
		if out, ok := mapChars(" ", steps); !ok || out != " " {
			p.sp = false
		}
		for b := byte('!'); b < utf8.RuneSelf; b++ {
			out, ok := mapChars(string(b), steps)
			if ok && len(out) == 1 && out[0] < utf8.RuneSelf && !isWhiteSpace(rune(out[0])) {
				p.mapped[b] = out[0]
			}
		}
	}
	for _, side := range []struct {
		m            *matcher
		lstrip, rstr *[256]bool
	}{{t.rawMatcher, &p.lstripRaw, &p.rstripRaw}, {t.normMatcher, &p.lstripNorm, &p.rstripNorm}} {
		for i, pat := range side.m.pats {
			if pat == "" {
				continue
			}
			single := side.m.toks[i].SingleWord
			if spansCut(pat, '\n', true) || (single && pat[len(pat)-1] == '\n') {
				p.nl = false
			}
			if spansCut(pat, ' ', false) || (single && pat[0] == ' ') {
				p.sp = false
			}
			if side.m.toks[i].LStrip {
				side.lstrip[pat[0]] = true
			}
			if side.m.toks[i].RStrip {
				side.rstr[pat[len(pat)-1]] = true
			}
		}
	}
	p.ok = p.nl || p.sp
	return p
}

// spansCut reports whether an added token's text could match across a
// cut: whether it has the cut character followed (after: cutNL) or
// preceded (cutSP) by a character that is not white space. A token that
// ends with '\n' or starts with ' ' lies on one side of the cut; with
// single_word, it would look at the other side (see planStream).
func spansCut(pat string, cut byte, after bool) bool {
	for i := 0; i < len(pat); i++ {
		if pat[i] != cut {
			continue
		}
		if after && i+1 < len(pat) {
			if r, _ := utf8.DecodeRuneInString(pat[i+1:]); !isWhiteSpace(r) {
				return true
			}
		}
		if !after && i > 0 {
			if r, _ := utf8.DecodeLastRuneInString(pat[:i]); !isWhiteSpace(r) {
				return true
			}
		}
	}
	return false
}

// specialsAround returns the special tokens a post-processor puts before
// and after the sequence, and false if it does anything else to the ids
// (copies the sequence, leaves it out, changes it without special tokens).
func specialsAround(pp postProcessor) (prefix, suffix []int, ok bool) {
	if pp == nil {
		return nil, nil, true
	}
	const marker = -1 // no token has this id
	plain := &Encoding{IDs: []int{marker}}
	pp.process(plain, "", false, false)
	if len(plain.IDs) != 1 || plain.IDs[0] != marker {
		return nil, nil, false
	}
	e := &Encoding{IDs: []int{marker}}
	pp.process(e, "", true, false)
	at := -1
	for i, id := range e.IDs {
		if id == marker {
			if at >= 0 {
				return nil, nil, false
			}
			at = i
		}
	}
	if at < 0 {
		return nil, nil, false
	}
	return e.IDs[:at:at], e.IDs[at+1:], true
}

// preTokenizerCuts returns the cuts a pre-tokenizer keeps (see the comment
// at the top of the file), and whether X may not be '/' after a line
// break.
func preTokenizerCuts(pt preTokenizer) (nl, sp, noSlash bool) {
	switch pt := pt.(type) {
	case byteLevelPreTokenizer:
		if !pt.useRegex {
			return false, false, false
		}
		return !pt.addPrefixSpace, true, false
	case splitPreTokenizer:
		if pt.onSpace {
			return true, true, false
		}
		if pt.behavior == splitContiguous {
			// Adjacent pieces of the same kind merge across the cut.
			return false, false, false
		}
		p := pt.p
		if inv, ok := p.(invertPattern); ok {
			p = inv.p
		}
		switch p := p.(type) {
		case gpt2Scanner, cl100kScanner:
			// Every character is in a match, so matches (or, inverted,
			// gaps) follow each other and the behaviours other than
			// Contiguous keep each as its own piece.
			return true, true, false
		case *regexPattern:
			if p.re.String() == strings.ReplaceAll(o200kPattern, contractionsIgnoreCase, contractionsFolded) {
				return true, true, true
			}
		}
	case metaspacePreTokenizer:
		if pt.split {
			return false, true, false
		}
	case sequencePreTokenizer:
		if len(pt) > 0 {
			return preTokenizerCuts(pt[0])
		}
	}
	return false, false, false
}

// charStep is one step of a normalizer that acts character by character;
// avoid lists the characters a Replace step matches (the cut characters
// and the neighbours of a cut must not be among them).
type charStep struct {
	n     normalizer
	avoid string
}

// charNormalizerSteps flattens a normalizer into character-wise steps, and
// reports whether one composes characters; ok is false for a normalizer
// that is not character-wise.
func charNormalizerSteps(n normalizer, dst []charStep) (_ []charStep, composing, ok bool) {
	switch n := n.(type) {
	case unicodeNormalizer:
		return append(dst, charStep{n: n}), n.form == norm.NFC || n.form == norm.NFKC, true
	case lowercaseNormalizer:
		return append(dst, charStep{n: n}), false, true
	case *replaceNormalizer:
		var alts []string
		switch p := n.p.(type) {
		case literalPattern:
			alts = []string{string(p)}
		case *regexPattern:
			alts = strings.Split(p.re.String(), "|")
			for _, a := range alts {
				// Only an alternation of plain strings.
				if a == "" || strings.ContainsAny(a, `\.+*?()[]{}^$#`) {
					return dst, false, false
				}
			}
		default:
			return dst, false, false
		}
		return append(dst, charStep{n: n, avoid: strings.Join(alts, "")}), false, true
	case sequenceNormalizer:
		composing := false
		for _, x := range n {
			var c, ok bool
			if dst, c, ok = charNormalizerSteps(x, dst); !ok {
				return dst, false, false
			}
			composing = composing || c
		}
		return dst, composing, true
	}
	return dst, false, false
}

// mapChars applies the steps to s (a character on its own); ok is false
// when a Replace step would match one of its characters.
func mapChars(s string, steps []charStep) (string, bool) {
	for _, st := range steps {
		if strings.ContainsAny(s, st.avoid) {
			return "", false
		}
		var err error
		if s, err = normalizeString(st.n, s); err != nil {
			return "", false
		}
	}
	return s, true
}

// neighbours checks the characters around a cut: y ends just before the
// cut character (cutNL) or the cut (cutSP), x starts at b[xAt]. It returns
// the first byte of x and the last byte of y once normalized.
func (p *streamPlan) neighbours(b []byte, yEnd, xAt int) (xFirst, yLast byte, ok bool) {
	y, ysize := utf8.DecodeLastRune(b[:yEnd])
	if ysize == 0 || (y == utf8.RuneError && ysize == 1) || isWhiteSpace(y) {
		return 0, 0, false
	}
	if xAt >= len(b) || !utf8.FullRune(b[xAt:]) {
		return 0, 0, false
	}
	x, xsize := utf8.DecodeRune(b[xAt:])
	if (x == utf8.RuneError && xsize == 1) || isWhiteSpace(x) {
		return 0, 0, false
	}
	if !p.normalized {
		return b[xAt], b[yEnd-1], true
	}
	if x >= utf8.RuneSelf || y >= utf8.RuneSelf || p.mapped[x] == 0 || p.mapped[y] == 0 {
		return 0, 0, false
	}
	if p.composing && (xAt+1 >= len(b) || b[xAt+1] >= utf8.RuneSelf) {
		return 0, 0, false
	}
	return p.mapped[x], p.mapped[y], true
}

// cutAt reports whether b may be cut at c, given that b[c-1] is '\n'
// (cutNL) or b[c] is ' ' (cutSP).
func (p *streamPlan) cutAt(b []byte, c int, afterNL bool) bool {
	if afterNL {
		xFirst, _, ok := p.neighbours(b, c-1, c)
		return ok && !(p.noSlash && xFirst == '/') && !p.lstripRaw[b[c]] && !p.lstripNorm[xFirst]
	}
	_, yLast, ok := p.neighbours(b, c, c+1)
	return ok && !p.rstripRaw[b[c-1]] && !p.rstripNorm[yLast]
}

// lastCut returns the last position of b where it may be cut, looking at
// the positions from on, or -1.
func (p *streamPlan) lastCut(b []byte, from int) int {
	for i := len(b) - 1; i >= max(from, 1); i-- {
		switch b[i] {
		case '\n':
			if p.nl && i+1 < len(b) && p.cutAt(b, i+1, true) {
				return i + 1
			}
		case ' ':
			if p.sp && p.cutAt(b, i, false) {
				return i
			}
		}
	}
	return -1
}

// Streams reports whether EncodeReader encodes this tokenizer's input
// piece by piece, in memory bounded by its chunk size and the longest
// pre-token. Otherwise it reads the whole input first (1 GiB at most).
func (t *Tokenizer) Streams() bool { return t.stream.ok }

// EncodeReader encodes the text read from r and calls emit with the ids,
// in consecutive runs: together they are exactly the ids EncodeFull gives
// for the whole text with the same addSpecial (special tokens of the
// template at the start and the end, once). emit must not keep ids after
// it returns: the slice is reused. An error from emit stops the encoding
// and is returned, wrapped.
//
// When Streams reports true, EncodeReader reads about 1 MiB at a time and
// encodes up to the last place where the text may be cut without changing
// the ids (a line break or a space between two characters that are not
// white space, as the tokenizer allows); its memory is bounded by the
// chunk size and the longest stretch without such a place, whatever the
// size of the input (a stretch of more than 1 GiB without such a place is
// an error wrapping api.ErrOutOfRange). Otherwise (a normalizer or
// pre-tokenizer that needs the whole text, truncation, padding) it reads
// the whole input, 1 GiB at most (more is an error wrapping
// api.ErrOutOfRange), and encodes it at once.
//
// The context is checked between chunks; cancellation returns an error
// wrapping ctx.Err(). Text that is not valid UTF-8 gives an error wrapping
// api.ErrCorrupt, as Encode does; the ids of the pieces before the invalid
// bytes may already have been emitted.
func (t *Tokenizer) EncodeReader(ctx context.Context, r io.Reader, addSpecial bool, emit func(ids []int) error) error {
	return t.encodeReader(ctx, r, addSpecial, emit, defaultStreamChunk)
}

// encodeReader is EncodeReader reading chunk bytes at a time.
func (t *Tokenizer) encodeReader(ctx context.Context, r io.Reader, addSpecial bool, emit func(ids []int) error, chunk int) (err error) {
	defer api.Recover(&err)
	chunk = max(chunk, 1)
	if !t.stream.ok {
		return t.encodeWhole(ctx, r, addSpecial, emit, chunk)
	}
	p := &t.stream
	var ids []int
	if addSpecial {
		ids = append(ids, p.prefix...)
	}
	send := func() error {
		if len(ids) == 0 {
			return nil
		}
		if err := emit(ids); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		ids = ids[:0]
		return nil
	}
	var buf []byte
	from := 0 // positions of buf before from hold no cut
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		var eof bool
		if buf, eof, err = readChunk(r, buf, chunk); err != nil {
			return err
		}
		if eof {
			if ids, err = t.appendIDs(string(buf), ids); err != nil {
				return err
			}
			if addSpecial {
				ids = append(ids, p.suffix...)
			}
			return send()
		}
		c := p.lastCut(buf, from)
		if c < 0 {
			// No place to cut yet: read on, with the text kept.
			if int64(len(buf)) > maxWholeInput {
				return fmt.Errorf("encode: the text has more than %d bytes without a place to cut it: %w", maxWholeInput, api.ErrOutOfRange)
			}
			from = max(0, len(buf)-cutLookahead)
			continue
		}
		if ids, err = t.appendIDs(string(buf[:c]), ids); err != nil {
			return err
		}
		if err := send(); err != nil {
			return err
		}
		buf = buf[:copy(buf, buf[c:])]
		from = max(0, len(buf)-cutLookahead)
	}
}

// readChunk reads at least n more bytes into buf, fewer at the end of the
// input (eof true). The buffer grows as the bytes come, so that a short
// input does not cost a whole chunk.
func readChunk(r io.Reader, buf []byte, n int) (_ []byte, eof bool, err error) {
	want := len(buf) + n
	for len(buf) < want {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(want-len(buf), max(len(buf), 4096)))
		}
		k, err := r.Read(buf[len(buf):min(cap(buf), want)])
		buf = buf[:len(buf)+k]
		if errors.Is(err, io.EOF) {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, fmt.Errorf("encode: reading the text: %w", err)
		}
	}
	return buf, false, nil
}

// encodeWhole reads all of r (maxWholeInput bytes at most) and encodes it
// at once, for a tokenizer that does not stream.
func (t *Tokenizer) encodeWhole(ctx context.Context, r io.Reader, addSpecial bool, emit func(ids []int) error, chunk int) error {
	var buf []byte
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		var eof bool
		var err error
		if buf, eof, err = readChunk(r, buf, chunk); err != nil {
			return err
		}
		if int64(len(buf)) > maxWholeInput {
			return fmt.Errorf("encode: the text is longer than %d bytes, the most this tokenizer (which does not stream) reads at once: %w", maxWholeInput, api.ErrOutOfRange)
		}
		if eof {
			break
		}
	}
	// buf is not changed after this: the string may share its memory.
	text := unsafe.String(unsafe.SliceData(buf), len(buf))
	e, err := t.encode(text, addSpecial, false, true)
	if err != nil {
		return err
	}
	if len(e.IDs) == 0 {
		return nil
	}
	if err := emit(e.IDs); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return nil
}
