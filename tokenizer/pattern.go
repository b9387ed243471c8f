package tokenizer

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"

	"github.com/densessm/densessm/api"
)

// pattern finds the delimiters of a split. matches appends to dst the
// matches of the pattern in s and the gaps between them, in order, so that
// together they cover s; an empty s gives one empty gap.
type pattern interface {
	matches(s string, dst []match) ([]match, error)
}

// appendCovering appends a gap before [lo, hi) if needed, then the match.
func appendCovering(dst []match, prev, lo, hi int) []match {
	if prev < lo {
		dst = append(dst, match{prev, lo, false})
	}
	return append(dst, match{lo, hi, true})
}

// finishCovering appends the final gap after the last match.
func finishCovering(dst []match, prev, n int) []match {
	if prev < n {
		dst = append(dst, match{prev, n, false})
	}
	return dst
}

// Regular expressions that have an exact hand-written scanner. The
// strings are the patterns as they appear in tokenizer.json files once the
// JSON escapes are decoded.
const (
	// gpt2Pattern is GPT-2's split pattern, used by the ByteLevel
	// pre-tokenizer and by Split pre-tokenizers of converted tokenizers.
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// cl100kPattern is the cl100k_base pattern as Hugging Face converted
	// tokenizers (Llama 3 and others) write it.
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// cl100kTiktokenPattern is tiktoken's spelling of the same pattern;
	// its possessive quantifiers and single [\r\n] match exactly the same
	// text.
	cl100kTiktokenPattern = `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`
	// singleDigitPattern is the cl100k pattern with one digit per match
	// (Qwen2 and others).
	singleDigitPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// The case-insensitive contractions of the cl100k family, and the same
// with Oniguruma's case folding written out.
const (
	contractionsIgnoreCase = `(?i:'s|'t|'re|'ve|'m|'ll|'d)`
	contractionsFolded     = `(?:'[sSſ]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`
)

// compilePattern returns a matcher for a regular expression in Oniguruma
// syntax: an exact scanner for the known patterns, and regexp2 (a
// backtracking engine with lookaround) for the others.
func compilePattern(expr string) (pattern, error) {
	switch expr {
	case gpt2Pattern:
		return gpt2Scanner{}, nil
	case cl100kPattern, cl100kTiktokenPattern:
		return cl100kScanner{maxDigits: 3}, nil
	case singleDigitPattern:
		return cl100kScanner{maxDigits: 1}, nil
	}
	// regexp2's (?i) does not fold ſ to s as Oniguruma does; spell out the
	// case-insensitive contractions many patterns share.
	expr = strings.ReplaceAll(expr, contractionsIgnoreCase, contractionsFolded)
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %v: %w", expr, err, api.ErrUnsupported)
	}
	re.MatchTimeout = regexTimeout
	return &regexPattern{re: re}, nil
}

// regexTimeout bounds one search of a fallback regular expression, so that
// a pattern with catastrophic backtracking gives an error, not a hang.
const regexTimeout = 10 * time.Second

// scanMatches covers s with the matches of a scanner whose matches are
// contiguous: next returns the end of the match that starts at i.
func scanMatches(s string, dst []match, next func(s string, i int) int) []match {
	if s == "" {
		return append(dst, match{0, 0, false})
	}
	for i := 0; i < len(s); {
		j := next(s, i)
		dst = append(dst, match{i, j, true})
		i = j
	}
	return dst
}

// runEnd returns the end of the run of runes of class c that starts at i.
func runEnd(s string, i, c int) int {
	for i < len(s) {
		cc, size := classAt(s, i)
		if cc != c {
			break
		}
		i += size
	}
	return i
}

// spaceRunEnd returns the end of the white-space run at i and the start of
// its last rune.
func spaceRunEnd(s string, i int) (end, last int) {
	end, last = i, i
	for end < len(s) {
		cc, size := classAt(s, end)
		if cc != classSpace {
			break
		}
		last = end
		end += size
	}
	return end, last
}

// scanner is a pattern whose matches are contiguous and cover the text:
// next returns the end of the match that starts at i.
type scanner interface {
	pattern
	next(s string, i int) int
}

// gpt2Scanner matches gpt2Pattern exactly. Every rune starts a match (the
// alternatives cover all four classes), so matches are contiguous.
type gpt2Scanner struct{}

func (gpt2Scanner) matches(s string, dst []match) ([]match, error) {
	return scanMatches(s, dst, gpt2Next), nil
}

func (gpt2Scanner) next(s string, i int) int { return gpt2Next(s, i) }

// gpt2Next returns the end of the gpt2Pattern match that starts at i.
func gpt2Next(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		}
		if i+2 < len(s) {
			switch s[i+1 : i+3] {
			case "re", "ve", "ll":
				return i + 3
			}
		}
	}
	c, size := classAt(s, i)
	if s[i] == ' ' && i+1 < len(s) {
		// " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+" with the space.
		if nc, _ := classAt(s, i+1); nc != classSpace {
			return runEnd(s, i+1, nc)
		}
	}
	if c != classSpace {
		return runEnd(s, i+size, c)
	}
	return spaceMatchEnd(s, i)
}

// spaceMatchEnd returns the end of "\s+(?!\S)|\s+" at i: a run of white
// space that reaches the end of the text, or leaves its last rune to the
// word that follows, or a single white-space rune.
func spaceMatchEnd(s string, i int) int {
	end, last := spaceRunEnd(s, i)
	if end == len(s) || last == i {
		return end
	}
	return last
}

// cl100kScanner matches cl100kPattern (maxDigits 3) or singleDigitPattern
// (maxDigits 1) exactly.
type cl100kScanner struct{ maxDigits int }

func (p cl100kScanner) matches(s string, dst []match) ([]match, error) {
	return scanMatches(s, dst, p.next), nil
}

// foldsTo reports whether r equals the ASCII lower-case letter l under
// Unicode simple case folding (the (?i) of the contractions).
func foldsTo(r rune, l byte) bool {
	if r == rune(l) || r == rune(l-'a'+'A') {
		return true
	}
	return l == 's' && r == 'ſ' // U+017F LATIN SMALL LETTER LONG S
}

// next returns the end of the match that starts at i.
func (p cl100kScanner) next(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		r1, n1 := utf8.DecodeRuneInString(s[i+1:])
		if foldsTo(r1, 's') || foldsTo(r1, 't') || foldsTo(r1, 'm') || foldsTo(r1, 'd') {
			return i + 1 + n1
		}
		if j := i + 1 + n1; j < len(s) {
			r2, n2 := utf8.DecodeRuneInString(s[j:])
			if (foldsTo(r1, 'r') && foldsTo(r2, 'e')) || (foldsTo(r1, 'v') && foldsTo(r2, 'e')) ||
				(foldsTo(r1, 'l') && foldsTo(r2, 'l')) {
				return j + n2
			}
		}
	}
	c, size := classAt(s, i)
	switch c {
	case classLetter:
		return runEnd(s, i+size, classLetter)
	case classNumber:
		j := i + size
		for k := 1; k < p.maxDigits && j < len(s); k++ {
			nc, nsize := classAt(s, j)
			if nc != classNumber {
				break
			}
			j += nsize
		}
		return j
	}
	// "[^\r\n\p{L}\p{N}]?\p{L}+": one other or white-space rune, not a line
	// break, before letters.
	if s[i] != '\r' && s[i] != '\n' && i+size < len(s) {
		if nc, _ := classAt(s, i+size); nc == classLetter {
			return runEnd(s, i+size, classLetter)
		}
	}
	// " ?[^\s\p{L}\p{N}]+[\r\n]*"
	start := -1
	if c == classOther {
		start = i
	} else if s[i] == ' ' && i+1 < len(s) {
		if nc, _ := classAt(s, i+1); nc == classOther {
			start = i + 1
		}
	}
	if start >= 0 {
		j := runEnd(s, start, classOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// "\s*[\r\n]+": white space up to and including its last line break.
	end, _ := spaceRunEnd(s, i)
	if k := strings.LastIndexAny(s[i:end], "\r\n"); k >= 0 {
		return i + k + 1
	}
	return spaceMatchEnd(s, i)
}

// regexPattern is a regular expression run by regexp2, for patterns
// without a scanner.
type regexPattern struct{ re *regexp2.Regexp }

func (p *regexPattern) matches(s string, dst []match) ([]match, error) {
	if s == "" {
		return append(dst, match{0, 0, false}), nil
	}
	runes := []rune(s)
	// byteAt[k] is the byte offset of rune k.
	byteAt := make([]int, len(runes)+1)
	off := 0
	for k, r := range runes {
		byteAt[k] = off
		off += utf8.RuneLen(r)
	}
	byteAt[len(runes)] = off
	prev := 0
	m, err := p.re.FindRunesMatch(runes)
	for ; err == nil && m != nil; m, err = p.re.FindNextMatch(m) {
		lo, hi := byteAt[m.Index], byteAt[m.Index+m.Length]
		dst = appendCovering(dst, prev, lo, hi)
		prev = hi
	}
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %w", p.re.String(), err)
	}
	return finishCovering(dst, prev, len(s)), nil
}

// literalPattern matches every non-overlapping occurrence of a string.
type literalPattern string

func (p literalPattern) matches(s string, dst []match) ([]match, error) {
	if s == "" {
		return append(dst, match{0, 0, false}), nil
	}
	if p == "" {
		// An empty pattern matches between all runes: each rune is a piece.
		for i, r := range s {
			dst = append(dst, match{i, i + utf8.RuneLen(r), false})
		}
		return dst, nil
	}
	prev := 0
	for prev <= len(s) {
		k := strings.Index(s[prev:], string(p))
		if k < 0 {
			break
		}
		lo := prev + k
		dst = appendCovering(dst, prev, lo, lo+len(p))
		prev = lo + len(p)
	}
	return finishCovering(dst, prev, len(s)), nil
}

// runePattern matches every rune for which the predicate holds, one match
// per rune.
type runePattern func(rune) bool

func (p runePattern) matches(s string, dst []match) ([]match, error) {
	if s == "" {
		return append(dst, match{0, 0, false}), nil
	}
	prev := 0
	for i, r := range s {
		if p(r) {
			dst = appendCovering(dst, prev, i, i+utf8.RuneLen(r))
			prev = i + utf8.RuneLen(r)
		}
	}
	return finishCovering(dst, prev, len(s)), nil
}

// invertPattern swaps matches and gaps of another pattern.
type invertPattern struct{ p pattern }

func (p invertPattern) matches(s string, dst []match) ([]match, error) {
	n := len(dst)
	dst, err := p.p.matches(s, dst)
	for i := n; i < len(dst); i++ {
		dst[i].isMatch = !dst[i].isMatch
	}
	return dst, err
}
