package tokenizer

import (
	"sort"
	"unicode/utf8"
)

// AddedToken is a token of the file's "added_tokens" list: matched in the
// text before the model sees it.
type AddedToken struct {
	// ID is the token's id, Content the text it stands for.
	ID      int
	Content string
	// SingleWord: only match when not inside a word.
	SingleWord bool
	// LStrip and RStrip: the match takes the white space on its left or
	// right with it.
	LStrip, RStrip bool
	// Normalized: match against the normalized text (with the normalized
	// content) rather than the raw input.
	Normalized bool
	// Special: a control token, left out of decoded text by default.
	Special bool
}

// matcher finds added tokens in text, leftmost first and longest first
// among tokens that start at the same place (Aho-Corasick's leftmost-longest
// semantics, as Hugging Face uses).
type matcher struct {
	// byFirst lists, for each first byte, the indices into pats of the
	// patterns starting with it, longest first.
	byFirst [256][]int
	pats    []string
	toks    []*AddedToken
}

// newMatcher builds a matcher for the given patterns (the token contents,
// normalized or not) and their tokens.
func newMatcher(pats []string, toks []*AddedToken) *matcher {
	m := &matcher{pats: pats, toks: toks}
	for i, p := range pats {
		if p == "" {
			continue
		}
		m.byFirst[p[0]] = append(m.byFirst[p[0]], i)
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(pats[l[i]]) > len(pats[l[j]]) })
	}
	return m
}

// empty reports whether the matcher has no pattern.
func (m *matcher) empty() bool { return len(m.pats) == 0 }

// find returns the next match at or after i: its range and token, or ok
// false.
func (m *matcher) find(s string, i int) (lo, hi int, tok *AddedToken, ok bool) {
	for ; i < len(s); i++ {
		for _, k := range m.byFirst[s[i]] {
			p := m.pats[k]
			if len(s)-i >= len(p) && s[i:i+len(p)] == p {
				return i, i + len(p), m.toks[k], true
			}
		}
	}
	return 0, 0, nil, false
}

// splitAdded cuts a piece around the added tokens m finds in it, applying
// their single_word, lstrip and rstrip settings as Hugging Face does, and
// appends the pieces to dst.
func splitAdded(n nstr, m *matcher, dst []part) []part {
	s := n.s
	if s == "" || m.empty() {
		return append(dst, part{n: n, added: -1})
	}
	start := 0
	for i := 0; i < len(s); {
		lo, hi, tok, ok := m.find(s, i)
		if !ok {
			break
		}
		i = hi
		if tok.SingleWord {
			if (lo > 0 && endsWithWord(s[:lo])) || (hi < len(s) && startsWithWord(s[hi:])) {
				continue
			}
		}
		if tok.LStrip {
			lo = max(trailingSpaceStart(s[:lo]), start)
		}
		if tok.RStrip {
			hi += leadingSpaceEnd(s[hi:])
		}
		if start < lo {
			dst = append(dst, part{n: n.slice(start, lo), added: -1})
		}
		dst = append(dst, part{n: n.slice(lo, hi), added: int32(tok.ID)})
		start = hi
	}
	if start != len(s) {
		dst = append(dst, part{n: n.slice(start, len(s)), added: -1})
	}
	return dst
}

// endsWithWord reports whether the last rune of s is a word character.
func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isRustWord(r)
}

// startsWithWord reports whether the first rune of s is a word character.
func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isRustWord(r)
}

// trailingSpaceStart returns where the white space at the end of s starts.
func trailingSpaceStart(s string) int {
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !isWhiteSpace(r) {
			break
		}
		i -= size
	}
	return i
}

// leadingSpaceEnd returns the length of the white space at the start of s.
func leadingSpaceEnd(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isWhiteSpace(r) {
			break
		}
		i += size
	}
	return i
}
