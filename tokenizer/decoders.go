package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// decoder turns the token strings of a decode into text pieces; the pieces
// of the last decoder of a chain are concatenated.
type decoder interface {
	decodeChain(tokens []string) ([]string, error)
}

// parseDecoder reads a "decoder" object of tokenizer.json.
func parseDecoder(raw []byte, depth int) (decoder, error) {
	o, typ, err := parseComponent(raw, "decoder", depth)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		r, err := o.char("replacement")
		if err != nil {
			return nil, err
		}
		scheme, err := o.prependScheme()
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{replacement: r, dropFirst: scheme != prependNever}, nil
	case "Replace":
		p, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		content, err := o.requiredString("content")
		if err != nil {
			return nil, err
		}
		return &replaceDecoder{p: p, content: content}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		c, err := o.char("content")
		if err != nil {
			return nil, err
		}
		start, err := o.count("start")
		if err != nil {
			return nil, err
		}
		stop, err := o.count("stop")
		if err != nil {
			return nil, err
		}
		return stripDecoder{content: c, start: start, stop: stop}, nil
	case "BPEDecoder":
		suffix, err := o.optionalString("suffix", "</w>")
		if err != nil {
			return nil, err
		}
		return bpeDecoder{suffix: suffix}, nil
	case "Sequence":
		seq, err := parseSequence(o, "decoders", "decoder", func(raw []byte) (decoder, error) { return parseDecoder(raw, depth+1) })
		if err != nil {
			return nil, err
		}
		return sequenceDecoder(seq), nil
	}
	return nil, fmt.Errorf("decoder type %q: %w", typ, api.ErrUnsupported)
}

// byteLevelDecoder maps byte-level characters back to bytes and decodes the
// whole as UTF-8, invalid sequences becoming U+FFFD. A token with a
// character outside the byte alphabet is kept as it is.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) ([]string, error) {
	var buf []byte
	for _, t := range tokens {
		start := len(buf)
		for _, r := range t {
			b, ok := charBytes[r]
			if !ok {
				buf = append(buf[:start], t...)
				break
			}
			buf = append(buf, b)
		}
	}
	return []string{lossyUTF8(buf)}, nil
}

// lossyUTF8 decodes b as Rust's String::from_utf8_lossy does: each maximal
// prefix of a valid sequence that is cut short, and each byte that cannot
// start one, becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			sb.Write(b[i : i+size])
			i += size
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += invalidPrefixLen(b[i:])
	}
	return sb.String()
}

// invalidPrefixLen returns the length of the maximal subpart at the start
// of b, which does not begin with a valid UTF-8 sequence: the lead byte and
// the continuation bytes that fit it (Unicode table 3-7).
func invalidPrefixLen(b []byte) int {
	lead := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // range of the second byte
	switch {
	case 0xC2 <= lead && lead <= 0xDF:
		need = 1
	case lead == 0xE0:
		need, lo = 2, 0xA0
	case lead == 0xED:
		need, hi = 2, 0x9F
	case 0xE1 <= lead && lead <= 0xEF:
		need = 2
	case lead == 0xF0:
		need, lo = 3, 0x90
	case lead == 0xF4:
		need, hi = 3, 0x8F
	case 0xF1 <= lead && lead <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		c := b[n]
		if k > 0 {
			lo, hi = 0x80, 0xBF
		}
		if c < lo || c > hi {
			break
		}
		n++
	}
	return n
}

// metaspaceDecoder turns the replacement character back into spaces; in
// the first token they are dropped unless the prepend scheme is "never".
type metaspaceDecoder struct {
	replacement rune
	dropFirst   bool
}

func (m metaspaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		with := " "
		if i == 0 && m.dropFirst {
			with = ""
		}
		out[i] = strings.ReplaceAll(t, string(m.replacement), with)
	}
	return out, nil
}

// replaceDecoder replaces the matches of a pattern in each token.
type replaceDecoder struct {
	p       pattern
	content string
}

func (r *replaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		n := newNstr(t, false)
		ms, err := r.p.matches(t, nil)
		if err != nil {
			return nil, err
		}
		n.replaceMatches(ms, r.content)
		out[i] = n.s
	}
	return out, nil
}

// byteFallbackDecoder turns runs of "<0xXX>" tokens into the text their
// bytes spell; a run that is not valid UTF-8 gives one U+FFFD per byte.
type byteFallbackDecoder struct{}

// fallbackByte parses a "<0xXX>" token the way Hugging Face does (Rust's
// u8::from_str_radix on the two characters, which allows a leading '+').
func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	hex := t[3:5]
	if hex[0] == '+' {
		hex = hex[1:]
	}
	v := 0
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		switch {
		case '0' <= c && c <= '9':
			v = v*16 + int(c-'0')
		case 'a' <= c && c <= 'f':
			v = v*16 + int(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v*16 + int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return byte(v), true
}

func (byteFallbackDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, 0, len(tokens))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out, nil
}

// fuseDecoder concatenates all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) ([]string, error) {
	return []string{strings.Join(tokens, "")}, nil
}

// stripDecoder removes up to start leading and stop trailing occurrences
// of a character from each token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (s stripDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		rs := []rune(t)
		lo := 0
		for lo < len(rs) && lo < s.start && rs[lo] == s.content {
			lo++
		}
		hi := len(rs)
		for k := 0; k < s.stop && hi > 0 && rs[hi-1] == s.content; k++ {
			hi--
		}
		if lo >= hi {
			out[i] = ""
			continue
		}
		out[i] = string(rs[lo:hi])
	}
	return out, nil
}

// bpeDecoder replaces the end-of-word suffix by a space (by nothing in the
// last token).
type bpeDecoder struct{ suffix string }

func (b bpeDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		with := " "
		if i == len(tokens)-1 {
			with = ""
		}
		out[i] = strings.ReplaceAll(t, b.suffix, with)
	}
	return out, nil
}

// sequenceDecoder chains decoders.
type sequenceDecoder []decoder

func (s sequenceDecoder) decodeChain(tokens []string) ([]string, error) {
	var err error
	for _, d := range s {
		if tokens, err = d.decodeChain(tokens); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}
