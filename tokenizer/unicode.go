package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the split patterns: every rune is exactly one of a
// letter (\p{L}), a number (\p{N}), white space (\s) or other.
const (
	classOther = iota
	classLetter
	classNumber
	classSpace
)

// asciiClass holds the class of each ASCII byte.
var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for b := 0; b < utf8.RuneSelf; b++ {
		t[b] = uint8(classOfRune(rune(b)))
	}
	return t
}()

// classOfRune returns the class of r under Oniguruma's Unicode definitions,
// which Hugging Face's regular expressions use: \s is the White_Space
// property, \p{L} and \p{N} the general categories.
func classOfRune(r rune) int {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case isWhiteSpace(r):
		return classSpace
	}
	return classOther
}

// classAt decodes the rune at s[i:] and returns its class and size.
func classAt(s string, i int) (class, size int) {
	if b := s[i]; b < utf8.RuneSelf {
		return int(asciiClass[b]), 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	return classOfRune(r), size
}

// isWhiteSpace reports the Unicode White_Space property (Rust's
// char::is_whitespace, \s in Oniguruma and in Rust's regex crate).
func isWhiteSpace(r rune) bool { return unicode.IsSpace(r) }

// isRustWord reports whether r matches \w in Rust's regex crate: Alphabetic,
// a mark, a decimal digit, a connector punctuation or a join control.
func isRustWord(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		unicode.Is(unicode.Join_Control, r)
}

// isPunctuation reports what the Punctuation pre-tokenizer splits on: ASCII
// punctuation (which includes symbols such as $ and +) and the Unicode
// punctuation categories.
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return ('!' <= r && r <= '/') || (':' <= r && r <= '@') || ('[' <= r && r <= '`') || ('{' <= r && r <= '~')
	}
	return unicode.IsPunct(r)
}

// isNumeric reports Rust's char::is_numeric: the Unicode number categories.
func isNumeric(r rune) bool { return unicode.IsNumber(r) }
