package tokenizer

import (
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// postProcessor finishes an encoding of text: the template's special
// tokens and offset trimming. full says whether the encoding carries tokens
// and offsets besides ids.
type postProcessor interface {
	process(e *Encoding, text string, addSpecial, full bool)
}

// parsePostProcessor reads a "post_processor" object of tokenizer.json.
func parsePostProcessor(raw []byte, depth int) (postProcessor, error) {
	o, typ, err := parseComponent(raw, "post-processor", depth)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		trim, err := o.boolean("trim_offsets", true)
		if err != nil {
			return nil, err
		}
		prefix, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		return byteLevelProcessor{trimOffsets: trim, addPrefixSpace: prefix}, nil
	case "TemplateProcessing":
		return parseTemplate(o)
	case "RobertaProcessing", "BertProcessing":
		return parseClsSep(o, typ == "RobertaProcessing")
	case "Sequence":
		seq, err := parseSequence(o, "processors", "post-processor", func(raw []byte) (postProcessor, error) { return parsePostProcessor(raw, depth+1) })
		if err != nil {
			return nil, err
		}
		return sequenceProcessor(seq), nil
	}
	return nil, fmt.Errorf("post-processor type %q: %w", typ, api.ErrUnsupported)
}

// byteLevelProcessor trims the offsets of tokens that start or end with
// (byte-level) spaces, so that they cover the word only. Hugging Face's
// Python API trims a number of characters from character offsets; the same
// number of characters is trimmed here from byte offsets.
type byteLevelProcessor struct{ trimOffsets, addPrefixSpace bool }

func (b byteLevelProcessor) process(e *Encoding, text string, _, full bool) {
	if !b.trimOffsets || !full {
		return
	}
	isSpace := func(r rune) bool { return r == byteChars[' '] || isWhiteSpace(r) }
	for i, t := range e.Tokens {
		rs := []rune(t)
		leading := 0
		for leading < len(rs) && isSpace(rs[leading]) {
			leading++
		}
		trailing := 0
		for trailing < len(rs) && isSpace(rs[len(rs)-1-trailing]) {
			trailing++
		}
		off := &e.Offsets[i]
		if leading > 0 {
			first := i == 0 || off[0] == 0
			if !(first && b.addPrefixSpace && leading == 1) {
				for k := 0; k < leading && off[0] < off[1]; k++ {
					_, size := utf8.DecodeRuneInString(text[off[0]:])
					off[0] += size
				}
				off[0] = min(off[0], off[1])
			}
		}
		if trailing > 0 {
			// Step back over trailing characters; Hugging Face only trims
			// when the end offset is at least that many characters in.
			end, k := off[1], 0
			for ; k < trailing && end > 0; k++ {
				_, size := utf8.DecodeLastRuneInString(text[:end])
				end -= size
			}
			if k == trailing {
				off[1] = max(end, off[0])
			}
		}
	}
}

// templatePiece is one element of a template: a special token (its key in
// the special-token table) or the sequence.
type templatePiece struct {
	special  string
	sequence bool
}

// specialEntry is a special token of a template: its ids and token strings.
type specialEntry struct {
	ids    []int
	tokens []string
}

// templateProcessor is TemplateProcessing for single sequences: it
// surrounds the encoding with the template's special tokens.
type templateProcessor struct {
	single   []templatePiece
	specials map[string]specialEntry
}

// parseTemplate reads a TemplateProcessing post-processor.
func parseTemplate(o object) (postProcessor, error) {
	var single []map[string]struct {
		ID string `json:"id"`
	}
	if err := o.decode("single", &single); err != nil {
		return nil, err
	}
	var specials map[string]struct {
		IDs    []int    `json:"ids"`
		Tokens []string `json:"tokens"`
	}
	if raw, ok := o["special_tokens"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &specials); err != nil {
			return nil, fmt.Errorf("template special_tokens: %v: %w", err, api.ErrCorrupt)
		}
	}
	t := &templateProcessor{specials: make(map[string]specialEntry, len(specials))}
	for key, s := range specials {
		if len(s.IDs) != len(s.Tokens) {
			return nil, fmt.Errorf("template special token %q has %d ids and %d tokens: %w", key, len(s.IDs), len(s.Tokens), api.ErrCorrupt)
		}
		for _, id := range s.IDs {
			if id < 0 {
				return nil, fmt.Errorf("template special token %q has id %d: %w", key, id, api.ErrCorrupt)
			}
		}
		t.specials[key] = specialEntry{ids: s.IDs, tokens: s.Tokens}
	}
	for i, piece := range single {
		if len(piece) != 1 {
			return nil, fmt.Errorf("template piece %d has %d keys: %w", i, len(piece), api.ErrCorrupt)
		}
		for kind, v := range piece {
			switch kind {
			case "SpecialToken":
				if _, ok := t.specials[v.ID]; !ok {
					return nil, fmt.Errorf("template uses special token %q, which it does not define: %w", v.ID, api.ErrCorrupt)
				}
				t.single = append(t.single, templatePiece{special: v.ID})
			case "Sequence":
				if v.ID == "A" {
					t.single = append(t.single, templatePiece{sequence: true})
				}
			default:
				return nil, fmt.Errorf("template piece %d of kind %q: %w", i, kind, api.ErrCorrupt)
			}
		}
	}
	return t, nil
}

func (t *templateProcessor) process(e *Encoding, _ string, addSpecial, full bool) {
	if !addSpecial {
		return
	}
	n := 0
	for _, p := range t.single {
		if p.sequence {
			n += len(e.IDs)
		} else {
			n += len(t.specials[p.special].ids)
		}
	}
	out := Encoding{IDs: make([]int, 0, n)}
	if full {
		out.Tokens, out.Offsets, out.Special = make([]string, 0, n), make([][2]int, 0, n), make([]bool, 0, n)
	}
	for _, p := range t.single {
		if p.sequence {
			out.IDs = append(out.IDs, e.IDs...)
			if full {
				out.Tokens = append(out.Tokens, e.Tokens...)
				out.Offsets = append(out.Offsets, e.Offsets...)
				out.Special = append(out.Special, e.Special...)
			}
			continue
		}
		s := t.specials[p.special]
		out.IDs = append(out.IDs, s.ids...)
		if full {
			out.Tokens = append(out.Tokens, s.tokens...)
			for range s.ids {
				out.Offsets = append(out.Offsets, [2]int{})
				out.Special = append(out.Special, true)
			}
		}
	}
	*e = out
}

// clsSepProcessor is RobertaProcessing or BertProcessing: the sequence
// between a CLS and a SEP token; RoBERTa's also trims offsets as the
// ByteLevel post-processor does.
type clsSepProcessor struct {
	cls, sep specialEntry
	trim     *byteLevelProcessor // nil: offsets kept
}

// parseClsSep reads a RobertaProcessing (roberta) or BertProcessing.
func parseClsSep(o object, roberta bool) (postProcessor, error) {
	p := &clsSepProcessor{}
	for _, f := range []struct {
		key string
		dst *specialEntry
	}{{"cls", &p.cls}, {"sep", &p.sep}} {
		var pair []json.RawMessage
		if err := o.decode(f.key, &pair); err != nil {
			return nil, err
		}
		var tok string
		var id int
		if len(pair) != 2 || json.Unmarshal(pair[0], &tok) != nil || json.Unmarshal(pair[1], &id) != nil || id < 0 {
			return nil, fmt.Errorf("%q must be [token, id]: %w", f.key, api.ErrCorrupt)
		}
		*f.dst = specialEntry{ids: []int{id}, tokens: []string{tok}}
	}
	if roberta {
		trim, err := o.boolean("trim_offsets", true)
		if err != nil {
			return nil, err
		}
		prefix, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		if trim {
			p.trim = &byteLevelProcessor{trimOffsets: true, addPrefixSpace: prefix}
		}
	}
	return p, nil
}

func (p *clsSepProcessor) process(e *Encoding, text string, addSpecial, full bool) {
	if p.trim != nil {
		p.trim.process(e, text, addSpecial, full)
	}
	if !addSpecial {
		return
	}
	e.IDs = append(append(slices.Clone(p.cls.ids), e.IDs...), p.sep.ids...)
	if full {
		e.Tokens = append(append(slices.Clone(p.cls.tokens), e.Tokens...), p.sep.tokens...)
		e.Offsets = append(append([][2]int{{}}, e.Offsets...), [2]int{})
		e.Special = append(append([]bool{true}, e.Special...), true)
	}
}

// sequenceProcessor applies post-processors in order.
type sequenceProcessor []postProcessor

func (s sequenceProcessor) process(e *Encoding, text string, addSpecial, full bool) {
	for _, p := range s {
		p.process(e, text, addSpecial, full)
	}
}
