package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// span is a range [start, end) of byte offsets in the original text.
type span struct{ start, end int }

// nstr is a piece of the input under normalization, the equivalent of the
// Hugging Face NormalizedString: its current text and, when offsets are
// tracked, for each byte of that text the range of the original input it
// came from.
type nstr struct {
	s string
	// align has one entry per byte of s when offsets are tracked, and is
	// nil otherwise.
	align []span
	// orig is the original offset where the piece was cut out of its
	// parent (Hugging Face's original_shift). Transformations keep it; it
	// is only maintained when offsets are tracked.
	orig int
}

// newNstr returns the whole of text as a piece; track says whether byte
// alignments are kept.
func newNstr(text string, track bool) nstr {
	n := nstr{s: text}
	if track {
		n.align = make([]span, len(text))
		for i, r := range text {
			size := utf8.RuneLen(r)
			if size < 0 {
				size = 1
			}
			for j := 0; j < size && i+j < len(text); j++ {
				n.align[i+j] = span{i, i + size}
			}
		}
	}
	return n
}

// slice returns the piece [lo, hi) of n (normalized byte offsets on rune
// boundaries).
func (n *nstr) slice(lo, hi int) nstr {
	c := nstr{s: n.s[lo:hi]}
	if n.align != nil {
		c.align = n.align[lo:hi:hi]
		if lo < hi {
			c.orig = n.align[lo].start
		} else {
			c.orig = n.orig + lo
		}
	}
	return c
}

// originalRange converts the normalized range [lo, hi) of n to original
// offsets, as Hugging Face does when it builds an encoding.
func (n *nstr) originalRange(lo, hi int) span {
	if lo == hi || lo < 0 || hi > len(n.align) || lo > hi {
		return span{n.orig + lo, n.orig + hi}
	}
	return span{n.align[lo].start, n.align[hi-1].end}
}

// edit is a transformation of (part of) a piece in Hugging Face's terms: the
// new characters, each with a change code. 0 means the character replaces
// the next old one; +1 means it is inserted; -k means it replaces the next
// old one and the k old characters after it are removed.
type edit struct {
	buf     []byte
	changes []int // one per rune of buf; only filled when tracking
	track   bool
}

// add appends r with the given change code.
func (e *edit) add(r rune, change int) {
	e.buf = utf8.AppendRune(e.buf, r)
	if e.track {
		e.changes = append(e.changes, change)
	}
}

// transform replaces the normalized range [lo, hi) of n by the edit. The
// first initial old characters of the range are removed before the edit's
// characters are matched against the old ones.
func (n *nstr) transform(lo, hi int, e *edit, initial int) {
	newText := n.s[:lo] + string(e.buf) + n.s[hi:]
	if n.align == nil {
		n.s = newText
		return
	}
	old := n.s[lo:hi]
	pos := 0
	skip := func(k int) {
		for ; k > 0 && pos < len(old); k-- {
			_, size := utf8.DecodeRuneInString(old[pos:])
			pos += size
		}
	}
	skip(initial)
	na := make([]span, 0, len(n.align)-(hi-lo)+len(e.buf))
	na = append(na, n.align[:lo]...)
	bi := 0
	for _, change := range e.changes {
		_, size := utf8.DecodeRune(e.buf[bi:])
		bi += size
		idx := lo + pos
		var a span
		switch {
		case change > 0 && idx >= 1:
			a = n.align[idx-1]
		case change > 0:
			a = span{n.orig, n.orig}
		case idx < len(n.align):
			a = n.align[idx]
		case len(n.align) > 0:
			a = n.align[len(n.align)-1]
		}
		if change <= 0 {
			skip(1)
		}
		if change < 0 {
			skip(-change)
		}
		for j := 0; j < size; j++ {
			na = append(na, a)
		}
	}
	na = append(na, n.align[hi:]...)
	n.s = newText
	n.align = na
}

// prepend inserts s before the text of a non-empty piece; the new
// characters share the alignment of the first one.
func (n *nstr) prepend(s string) {
	if n.s == "" || s == "" {
		return
	}
	first, size := utf8.DecodeRuneInString(n.s)
	e := edit{track: n.align != nil}
	for i, r := range []rune(s) {
		if i == 0 {
			e.add(r, 0)
		} else {
			e.add(r, 1)
		}
	}
	e.add(first, 1)
	n.transform(0, size, &e, 0)
}

// replaceMatches replaces every matched range of ms by content. The new
// characters take the alignment of the last byte they replace (or of the
// byte before an empty match), as in Hugging Face.
func (n *nstr) replaceMatches(ms []match, content string) {
	var b strings.Builder
	var na []span
	if n.align != nil {
		na = make([]span, 0, len(n.align))
	}
	for _, m := range ms {
		if !m.isMatch {
			b.WriteString(n.s[m.lo:m.hi])
			if na != nil {
				na = append(na, n.align[m.lo:m.hi]...)
			}
			continue
		}
		b.WriteString(content)
		if na != nil {
			a := span{n.orig, n.orig}
			if m.hi > 0 {
				a = n.align[m.hi-1]
			}
			for range len(content) {
				na = append(na, a)
			}
		}
	}
	n.s = b.String()
	if na != nil {
		n.align = na
	}
}

// strip removes leading (left) and trailing (right) white space.
func (n *nstr) strip(left, right bool) {
	lo, hi := 0, len(n.s)
	leading, trailing := 0, 0
	if left {
		for lo < hi {
			r, size := utf8.DecodeRuneInString(n.s[lo:])
			if !isWhiteSpace(r) {
				break
			}
			lo += size
			leading++
		}
	}
	if right {
		for hi > lo {
			r, size := utf8.DecodeLastRuneInString(n.s[:hi])
			if !isWhiteSpace(r) {
				break
			}
			hi -= size
			trailing++
		}
	}
	if leading == 0 && trailing == 0 {
		return
	}
	e := edit{track: n.align != nil}
	kept := n.s[lo:hi]
	for i, r := range kept {
		_, size := utf8.DecodeRuneInString(kept[i:])
		if i+size == len(kept) {
			e.add(r, -trailing)
		} else {
			e.add(r, 0)
		}
	}
	n.transform(0, len(n.s), &e, leading)
}

// splitBehavior says what a split does with the delimiters it finds.
type splitBehavior int

// The behaviours of Hugging Face's SplitDelimiterBehavior.
const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

// match is one part of a split: the normalized range [lo, hi) and whether
// the pattern matched it. A pattern's matches cover the whole text in order.
type match struct {
	lo, hi  int
	isMatch bool
}

// splitEach cuts n at the pattern's matches ms according to behavior and
// calls emit for each non-empty piece.
func (n *nstr) splitEach(ms []match, behavior splitBehavior, emit func(nstr) error) error {
	type part struct {
		lo, hi int
		remove bool
	}
	var parts []part
	switch behavior {
	case splitIsolated:
		for _, m := range ms {
			parts = append(parts, part{m.lo, m.hi, false})
		}
	case splitRemoved:
		for _, m := range ms {
			parts = append(parts, part{m.lo, m.hi, m.isMatch})
		}
	case splitContiguous:
		prev := false
		for _, m := range ms {
			if m.isMatch == prev && len(parts) > 0 {
				parts[len(parts)-1].hi = m.hi
			} else {
				parts = append(parts, part{m.lo, m.hi, false})
			}
			prev = m.isMatch
		}
	case splitMergedWithPrevious:
		prev := false
		for _, m := range ms {
			if m.isMatch && !prev && len(parts) > 0 {
				parts[len(parts)-1].hi = m.hi
			} else {
				parts = append(parts, part{m.lo, m.hi, false})
			}
			prev = m.isMatch
		}
	case splitMergedWithNext:
		prev := false
		for i := len(ms) - 1; i >= 0; i-- {
			m := ms[i]
			if m.isMatch && !prev && len(parts) > 0 {
				parts[len(parts)-1].lo = m.lo
			} else {
				parts = append(parts, part{m.lo, m.hi, false})
			}
			prev = m.isMatch
		}
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	for _, p := range parts {
		if p.remove || p.lo == p.hi {
			continue
		}
		if err := emit(n.slice(p.lo, p.hi)); err != nil {
			return err
		}
	}
	return nil
}
