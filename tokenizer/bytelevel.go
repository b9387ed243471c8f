package tokenizer

import (
	"unicode/utf8"
	"unsafe"
)

// byteChars maps each byte to the printable character that stands for it
// in byte-level vocabularies (GPT-2's bytes_to_unicode): printable Latin-1
// bytes stand for themselves, the others are shifted to U+0100 and up.
var byteChars, byteStrings, charBytes = func() (chars [256]rune, strs [256]string, back map[rune]byte) {
	back = make(map[rune]byte, 256)
	n := rune(0)
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			chars[b] = rune(b)
		} else {
			chars[b] = 256 + n
			n++
		}
		strs[b] = string(chars[b])
		back[chars[b]] = byte(b)
	}
	return chars, strs, back
}()

// byteLevelString maps every byte of s to its byte-level character. The
// result is built in one allocation of its exact size.
func byteLevelString(s string) string {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if byteChars[s[i]] >= utf8.RuneSelf {
			n++ // the character takes two bytes
		}
	}
	if n == len(s) {
		return s // every byte stands for itself
	}
	buf := make([]byte, 0, n)
	for i := 0; i < len(s); i++ {
		buf = append(buf, byteStrings[s[i]]...)
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// byteLevelApply maps the text of n to byte-level characters, keeping the
// alignment of each original character for all of its bytes.
func byteLevelApply(n *nstr) {
	if n.align == nil {
		n.s = byteLevelString(n.s)
		return
	}
	e := edit{track: true, buf: make([]byte, 0, 2*len(n.s))}
	for i := 0; i < len(n.s); {
		_, size := utf8.DecodeRuneInString(n.s[i:])
		for j := 0; j < size; j++ {
			change := 0
			if j > 0 {
				change = 1
			}
			e.add(byteChars[n.s[i+j]], change)
		}
		i += size
	}
	n.transform(0, len(n.s), &e, 0)
}
