package tokenizer

import (
	"fmt"
	"strings"

	"github.com/densessm/densessm/api"
)

// part is one piece of the input once added tokens are matched: either a
// matched added token (added >= 0, its id) or normalized text still to be
// pre-tokenized and tokenized.
type part struct {
	n     nstr
	added int32
}

// preTokenizer splits a piece of text that is not an added token into
// words (and may rewrite them): each calls emit for every non-empty word of
// n, in order.
type preTokenizer interface {
	each(n nstr, emit func(nstr) error) error
}

// parsePreTokenizer reads a "pre_tokenizer" object of tokenizer.json.
// needTrack is set when the pre-tokenizer needs alignments to decide what to
// do (Metaspace with prepend_scheme "first").
func parsePreTokenizer(raw []byte, depth int, needTrack *bool) (preTokenizer, error) {
	o, typ, err := parseComponent(raw, "pre-tokenizer", depth)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		prefix, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		useRegex, err := o.boolean("use_regex", true)
		if err != nil {
			return nil, err
		}
		return byteLevelPreTokenizer{addPrefixSpace: prefix, useRegex: useRegex}, nil
	case "Split":
		p, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		behavior, err := o.behavior("behavior", -1)
		if err != nil {
			return nil, err
		}
		invert, err := o.boolean("invert", false)
		if err != nil {
			return nil, err
		}
		if invert {
			p = invertPattern{p}
		}
		return splitPreTokenizer{p: p, behavior: behavior}, nil
	case "Metaspace":
		return parseMetaspace(o, needTrack)
	case "Whitespace":
		return splitPreTokenizer{p: wordPattern{}, behavior: splitRemoved, onSpace: true}, nil
	case "WhitespaceSplit":
		return splitPreTokenizer{p: runePattern(isWhiteSpace), behavior: splitRemoved, onSpace: true}, nil
	case "CharDelimiterSplit":
		d, err := o.char("delimiter")
		if err != nil {
			return nil, err
		}
		return splitPreTokenizer{p: runePattern(func(r rune) bool { return r == d }), behavior: splitRemoved}, nil
	case "Digits":
		individual, err := o.boolean("individual_digits", false)
		if err != nil {
			return nil, err
		}
		behavior := splitContiguous
		if individual {
			behavior = splitIsolated
		}
		return splitPreTokenizer{p: runePattern(isNumeric), behavior: behavior}, nil
	case "Punctuation":
		behavior, err := o.behavior("behavior", splitIsolated)
		if err != nil {
			return nil, err
		}
		return splitPreTokenizer{p: runePattern(isPunctuation), behavior: behavior}, nil
	case "Sequence":
		seq, err := parseSequence(o, "pretokenizers", "pre-tokenizer", func(raw []byte) (preTokenizer, error) { return parsePreTokenizer(raw, depth+1, needTrack) })
		if err != nil {
			return nil, err
		}
		return sequencePreTokenizer(seq), nil
	}
	return nil, fmt.Errorf("pre-tokenizer type %q: %w", typ, api.ErrUnsupported)
}

// byteLevelPreTokenizer is GPT-2's: an optional leading space, the GPT-2
// split pattern, then every byte mapped to its printable character.
type byteLevelPreTokenizer struct {
	addPrefixSpace, useRegex bool
}

func (b byteLevelPreTokenizer) each(n nstr, emit func(nstr) error) error {
	if b.addPrefixSpace && !strings.HasPrefix(n.s, " ") {
		n.prepend(" ")
	}
	if !b.useRegex {
		if n.s == "" {
			return nil
		}
		byteLevelApply(&n)
		return emit(n)
	}
	for i := 0; i < len(n.s); {
		j := gpt2Next(n.s, i)
		p := n.slice(i, j)
		byteLevelApply(&p)
		if err := emit(p); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// splitPreTokenizer splits on the matches of a pattern.
type splitPreTokenizer struct {
	p        pattern
	behavior splitBehavior
	// onSpace marks the Whitespace and WhitespaceSplit pre-tokenizers,
	// which end a piece at every white-space character and drop it.
	onSpace bool
}

func (s splitPreTokenizer) each(n nstr, emit func(nstr) error) error {
	if sc, ok := s.p.(scanner); ok && s.behavior == splitIsolated {
		// Every match is a piece: no need to list them first.
		for i := 0; i < len(n.s); {
			j := sc.next(n.s, i)
			if err := emit(n.slice(i, j)); err != nil {
				return err
			}
			i = j
		}
		return nil
	}
	ms, err := s.p.matches(n.s, nil)
	if err != nil {
		return err
	}
	return n.splitEach(ms, s.behavior, emit)
}

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

// metaspacePreTokenizer is SentencePiece's: spaces become the replacement
// character (▁), which is prepended to the text as the scheme says, and
// the text is split before each replacement character.
type metaspacePreTokenizer struct {
	replacement rune
	scheme      int
	split       bool
}

// parseMetaspace reads a Metaspace pre-tokenizer; older files give
// add_prefix_space instead of prepend_scheme.
func parseMetaspace(o object, needTrack *bool) (preTokenizer, error) {
	r, err := o.char("replacement")
	if err != nil {
		return nil, err
	}
	scheme, err := o.prependScheme()
	if err != nil {
		return nil, err
	}
	split, err := o.boolean("split", true)
	if err != nil {
		return nil, err
	}
	if scheme == prependFirst {
		*needTrack = true
	}
	return metaspacePreTokenizer{replacement: r, scheme: scheme, split: split}, nil
}

func (m metaspacePreTokenizer) each(n nstr, emit func(nstr) error) error {
	rep := string(m.replacement)
	if strings.IndexByte(n.s, ' ') >= 0 {
		ms, _ := runePattern(func(r rune) bool { return r == ' ' }).matches(n.s, nil)
		n.replaceMatches(ms, rep)
	}
	starts := strings.HasPrefix(n.s, rep)
	if (m.scheme == prependAlways && !starts) || (m.scheme == prependFirst && !starts && n.orig == 0) {
		n.prepend(rep)
	}
	if !m.split {
		if n.s == "" {
			return nil
		}
		return emit(n)
	}
	ms, _ := runePattern(func(r rune) bool { return r == m.replacement }).matches(n.s, nil)
	return n.splitEach(ms, splitMergedWithNext, emit)
}

// sequencePreTokenizer applies pre-tokenizers in order: each word of one
// is split by the next.
type sequencePreTokenizer []preTokenizer

func (s sequencePreTokenizer) each(n nstr, emit func(nstr) error) error {
	if len(s) == 0 {
		if n.s == "" {
			return nil
		}
		return emit(n)
	}
	next := emit
	for k := len(s) - 1; k > 0; k-- {
		p, inner := s[k], next
		next = func(q nstr) error { return p.each(q, inner) }
	}
	return s[0].each(n, next)
}

// wordPattern is the Whitespace pre-tokenizer's `\w+|[^\w\s]+` (Rust's
// Unicode \w), inverted: runs of word characters and runs of other
// non-space characters are kept as separate pieces, white space matches
// (and is removed).
type wordPattern struct{}

func (wordPattern) matches(s string, dst []match) ([]match, error) {
	if s == "" {
		return append(dst, match{0, 0, false}), nil
	}
	kind := func(r rune) int {
		switch {
		case isRustWord(r):
			return 1
		case isWhiteSpace(r):
			return 0
		}
		return 2
	}
	start, cur := 0, -1
	for i, r := range s {
		k := kind(r)
		if k != cur {
			if cur >= 0 {
				dst = append(dst, match{start, i, cur == 0})
			}
			start, cur = i, k
		}
	}
	return append(dst, match{start, len(s), cur == 0}), nil
}
