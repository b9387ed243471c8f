package tokenizer

import (
	"fmt"
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
		items, err := o.list("normalizers")
		if err != nil {
			return nil, err
		}
		seq := make(sequenceNormalizer, 0, len(items))
		for i, item := range items {
			n, err := parseNormalizer(item, depth+1)
			if err != nil {
				return nil, fmt.Errorf("normalizer %d of sequence: %w", i, err)
			}
			seq = append(seq, n)
		}
		return seq, nil
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

// unicodeNormalizer applies a Unicode normalization form. Each segment
// between normalization boundaries is rewritten on its own; its new
// characters replace the old ones in order, extra ones count as inserted,
// and missing ones as removed right after the first, which is how Hugging
// Face aligns them.
type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(n *nstr) error {
	if u.form.IsNormalString(n.s) {
		return nil
	}
	e := edit{track: n.align != nil, buf: make([]byte, 0, len(n.s)+len(n.s)/2)}
	var out []byte
	for i := 0; i < len(n.s); {
		j := i + u.form.NextBoundaryInString(n.s[i:], true)
		if j <= i {
			j = len(n.s)
		}
		seg := n.s[i:j]
		out = u.form.AppendString(out[:0], seg)
		in := utf8.RuneCountInString(seg)
		outN := utf8.RuneCount(out)
		k := 0
		for len(out) > 0 {
			r, size := utf8.DecodeRune(out)
			out = out[size:]
			change := 0
			switch {
			case k >= in:
				change = 1
			case k == 0 && outN < in:
				change = outN - in
			}
			e.add(r, change)
			k++
		}
		i = j
	}
	n.transform(0, len(n.s), &e, 0)
	return nil
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
