package tokenizer

import (
	"fmt"
	"sort"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/densessm/densessm/api"
)

// normalizer rewrites a piece of text before pre-tokenization.
type normalizer interface {
	normalize(n *nstr) error
}

// parseNormalizer reads a "normalizer" object of tokenizer.json.
func parseNormalizer(raw []byte, depth int) (normalizer, error) {
	o, typ, err := parseComponent(raw, "normalizer", depth)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Prepend":
		s, err := o.requiredString("prepend")
		if err != nil {
			return nil, err
		}
		return prependNormalizer(s), nil
	case "Replace":
		p, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		content, err := o.requiredString("content")
		if err != nil {
			return nil, err
		}
		return &replaceNormalizer{p: p, content: content}, nil
	case "Strip":
		left, err := o.boolean("strip_left", true)
		if err != nil {
			return nil, err
		}
		right, err := o.boolean("strip_right", true)
		if err != nil {
			return nil, err
		}
		return stripNormalizer{left, right}, nil
	case "Sequence":
		seq, err := parseSequence(o, "normalizers", "normalizer", func(raw []byte) (normalizer, error) { return parseNormalizer(raw, depth+1) })
		if err != nil {
			return nil, err
		}
		return sequenceNormalizer(seq), nil
	}
	return nil, fmt.Errorf("normalizer type %q: %w", typ, api.ErrUnsupported)
}

// normalizeString applies a normalizer to a plain string (the content of
// normalized added tokens).
func normalizeString(n normalizer, s string) (string, error) {
	if n == nil {
		return s, nil
	}
	ns := newNstr(s, false)
	if err := n.normalize(&ns); err != nil {
		return "", err
	}
	return ns.s, nil
}

// unicodeNormalizer applies a Unicode normalization form, aligning the new
// characters as Hugging Face's unicode-normalization-alignments crate does:
// each character is decomposed on its own (the first character of its
// decomposition replaces it, the others count as inserted), combining marks
// are put in canonical order carrying their change codes with them, and
// for the composed forms a character that absorbs another one records it
// as removed.
type unicodeNormalizer struct{ form norm.Form }

// normChar is a character of a decomposed text with its change code and
// canonical combining class.
type normChar struct {
	r      rune
	change int
	ccc    uint8
}

func (u unicodeNormalizer) normalize(n *nstr) error {
	if u.form.IsNormalString(n.s) {
		return nil
	}
	decomp, compose := norm.NFD, false
	switch u.form {
	case norm.NFKD:
		decomp = norm.NFKD
	case norm.NFC:
		compose = true
	case norm.NFKC:
		decomp, compose = norm.NFKD, true
	}
	chars := make([]normChar, 0, len(n.s))
	var one [utf8.UTFMax]byte
	for _, r := range n.s {
		size := utf8.EncodeRune(one[:], r)
		for k, d := range decomp.String(string(one[:size])) {
			c := normChar{r: d, ccc: norm.NFD.PropertiesString(string(d)).CCC()}
			if k > 0 {
				c.change = 1
			}
			chars = append(chars, c)
		}
	}
	// Canonical ordering: stable sort of each run of non-starters by
	// combining class.
	for i := 0; i < len(chars); {
		if chars[i].ccc == 0 {
			i++
			continue
		}
		j := i
		for j < len(chars) && chars[j].ccc != 0 {
			j++
		}
		run := chars[i:j]
		sort.SliceStable(run, func(a, b int) bool { return run[a].ccc < run[b].ccc })
		i = j
	}
	if compose {
		chars = composeChars(chars)
	}
	e := edit{track: n.align != nil, buf: make([]byte, 0, len(n.s)+len(n.s)/2)}
	for _, c := range chars {
		e.add(c.r, c.change)
	}
	n.transform(0, len(n.s), &e, 0)
	return nil
}

// composeChars applies canonical composition to a decomposed, canonically
// ordered text. A starter that absorbs a character takes over its change
// code, less one for the character that disappears.
func composeChars(chars []normChar) []normChar {
	out := chars[:0:0]
	starter := -1
	for _, c := range chars {
		if starter >= 0 {
			last := out[len(out)-1].ccc
			adjacent := starter == len(out)-1
			if adjacent || (last != 0 && last < c.ccc) {
				if r, ok := composePair(out[starter].r, c.r); ok {
					out[starter].r = r
					out[starter].change += c.change - 1
					continue
				}
			}
		}
		if c.ccc == 0 {
			starter = len(out)
		}
		out = append(out, c)
	}
	return out
}

// composePair returns the primary composite of a and b, if there is one.
func composePair(a, b rune) (rune, bool) {
	var buf [2 * utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], a)
	n += utf8.EncodeRune(buf[n:], b)
	c := norm.NFC.Bytes(buf[:n])
	r, size := utf8.DecodeRune(c)
	return r, size == len(c) && r != utf8.RuneError
}

// lowercaseNormalizer maps letters to lower case with Rust's
// char::to_lowercase (full mappings: İ becomes i and a combining dot).
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(n *nstr) error {
	changed := false
	for _, r := range n.s {
		if r == 'İ' || unicode.ToLower(r) != r {
			changed = true
			break
		}
	}
	if !changed {
		return nil
	}
	e := edit{track: n.align != nil, buf: make([]byte, 0, len(n.s))}
	for _, r := range n.s {
		if r == 'İ' {
			e.add('i', 0)
			e.add('\u0307', 1)
			continue
		}
		e.add(unicode.ToLower(r), 0)
	}
	n.transform(0, len(n.s), &e, 0)
	return nil
}

// prependNormalizer puts a string in front of every non-empty piece.
type prependNormalizer string

func (p prependNormalizer) normalize(n *nstr) error {
	n.prepend(string(p))
	return nil
}

// replaceNormalizer replaces every match of a pattern by a string.
type replaceNormalizer struct {
	p       pattern
	content string
}

func (r *replaceNormalizer) normalize(n *nstr) error {
	ms, err := r.p.matches(n.s, nil)
	if err != nil {
		return err
	}
	n.replaceMatches(ms, r.content)
	return nil
}

// stripNormalizer removes white space at the start and/or the end.
type stripNormalizer struct{ left, right bool }

func (s stripNormalizer) normalize(n *nstr) error {
	n.strip(s.left, s.right)
	return nil
}

// sequenceNormalizer applies normalizers in order.
type sequenceNormalizer []normalizer

func (s sequenceNormalizer) normalize(n *nstr) error {
	for _, x := range s {
		if err := x.normalize(n); err != nil {
			return err
		}
	}
	return nil
}
