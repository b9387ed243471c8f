package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// maxNesting bounds how deeply Sequence components may nest.
const maxNesting = 32

// fileJSON is the top level of a tokenizer.json file.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
	Truncation    json.RawMessage  `json:"truncation"`
	Padding       json.RawMessage  `json:"padding"`
}

// addedTokenJSON is one entry of "added_tokens".
type addedTokenJSON struct {
	ID         *int64  `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized *bool   `json:"normalized"`
	Special    bool    `json:"special"`
}

// maxFileSize bounds the size of a tokenizer.json file Load reads: the
// largest real ones are about 35 MB. It is a variable for the tests.
var maxFileSize int64 = 256 << 20

// Load reads a tokenizer.json file. A file larger than 256 MiB (or a
// device or pipe that gives more) is refused with an error wrapping
// api.ErrOutOfRange; a missing file or a directory gives one wrapping
// api.ErrNotFound.
func Load(path string) (*Tokenizer, error) {
	data, err := readcap.File(path, maxFileSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// FromJSON builds a tokenizer from the contents of a tokenizer.json file.
// Malformed files give errors wrapping api.ErrCorrupt; files that use a
// model or component this package does not implement give errors wrapping
// api.ErrUnsupported.
func FromJSON(data []byte) (t *Tokenizer, err error) {
	defer api.Recover(&err)
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v: %w", err, api.ErrCorrupt)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("tokenizer.json has no model: %w", api.ErrCorrupt)
	}
	t = &Tokenizer{}
	if t.model, err = parseModel(f.Model); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if !isNull(f.Normalizer) {
		if t.normalizer, err = parseNormalizer(f.Normalizer, 0); err != nil {
			return nil, err
		}
	}
	if !isNull(f.PreTokenizer) {
		if t.preTokenizer, err = parsePreTokenizer(f.PreTokenizer, 0, &t.alwaysTrack); err != nil {
			return nil, err
		}
	}
	if !isNull(f.PostProcessor) {
		if t.postProcessor, err = parsePostProcessor(f.PostProcessor, 0); err != nil {
			return nil, err
		}
	}
	if !isNull(f.Decoder) {
		if t.decoder, err = parseDecoder(f.Decoder, 0); err != nil {
			return nil, err
		}
	}
	if err := t.setAddedTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	t.vocabSize = len(t.model.tokens)
	for id := range t.added {
		t.vocabSize = max(t.vocabSize, int(id)+1)
	}
	if !isNull(f.Truncation) {
		if t.truncation, err = parseTruncation(f.Truncation); err != nil {
			return nil, err
		}
	}
	if !isNull(f.Padding) {
		if t.padding, err = parsePadding(f.Padding); err != nil {
			return nil, err
		}
	}
	t.nAdded = addedCount(t.postProcessor)
	t.special = t.guessSpecial()
	t.stream = t.planStream()
	return t, nil
}

// setAddedTokens validates the added tokens and builds their matchers.
func (t *Tokenizer) setAddedTokens(list []addedTokenJSON) error {
	t.added = make(map[int32]*AddedToken, len(list))
	t.addedByContent = make(map[string]int32, len(list))
	t.addedText = make(map[int32]string, len(list))
	limit := maxSparseIDs(len(t.model.vocab) + len(list))
	var rawPats, normPats []string
	var rawToks, normToks []*AddedToken
	for i, a := range list {
		if a.ID == nil || a.Content == nil {
			return fmt.Errorf("added token %d has no id or content: %w", i, api.ErrCorrupt)
		}
		if *a.ID < 0 || *a.ID >= int64(limit) {
			return fmt.Errorf("added token %q has id %d: %w", *a.Content, *a.ID, api.ErrCorrupt)
		}
		if !utf8.ValidString(*a.Content) {
			return fmt.Errorf("added token %d is not valid UTF-8: %w", i, api.ErrCorrupt)
		}
		tok := &AddedToken{
			ID: int(*a.ID), Content: *a.Content, SingleWord: a.SingleWord,
			LStrip: a.LStrip, RStrip: a.RStrip, Special: a.Special,
			Normalized: !a.Special,
		}
		if a.Normalized != nil {
			tok.Normalized = *a.Normalized
		}
		id := int32(tok.ID)
		if _, dup := t.added[id]; dup {
			return fmt.Errorf("two added tokens have id %d: %w", id, api.ErrCorrupt)
		}
		t.added[id] = tok
		t.addedByContent[tok.Content] = id
		t.addedOrder = append(t.addedOrder, tok)
		t.addedText[id] = tok.Content
		if tok.Content == "" {
			continue
		}
		if tok.Normalized {
			c, err := normalizeString(t.normalizer, tok.Content)
			if err != nil {
				return fmt.Errorf("normalizing added token %q: %w", tok.Content, err)
			}
			t.addedText[id] = c
			normPats = append(normPats, c)
			normToks = append(normToks, tok)
		} else {
			rawPats = append(rawPats, tok.Content)
			rawToks = append(rawToks, tok)
		}
	}
	t.rawMatcher = newMatcher(rawPats, rawToks)
	t.normMatcher = newMatcher(normPats, normToks)
	return nil
}

// parseModel reads the "model" object; only BPE is supported.
func parseModel(raw []byte) (*bpeModel, error) {
	o, err := parseObject(raw, "model")
	if err != nil {
		return nil, err
	}
	typ, err := o.optionalString("type", "")
	if err != nil {
		return nil, err
	}
	if typ == "" {
		// Old files have no type; BPE is the model with merges.
		if _, ok := o["merges"]; ok {
			typ = "BPE"
		} else {
			return nil, fmt.Errorf("model without a type or merges: %w", api.ErrUnsupported)
		}
	}
	if typ != "BPE" {
		return nil, fmt.Errorf("model type %q (only BPE is implemented): %w", typ, api.ErrUnsupported)
	}
	var opts bpeOptions
	for _, f := range []struct {
		key string
		dst *string
	}{{"unk_token", &opts.unkToken}, {"continuing_subword_prefix", &opts.prefix}, {"end_of_word_suffix", &opts.suffix}} {
		if *f.dst, err = o.optionalString(f.key, ""); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key string
		dst *bool
	}{{"fuse_unk", &opts.fuseUnk}, {"byte_fallback", &opts.byteFallback}, {"ignore_merges", &opts.ignoreMerges}} {
		if *f.dst, err = o.boolean(f.key, false); err != nil {
			return nil, err
		}
	}
	if raw, ok := o["dropout"]; ok && !isNull(raw) {
		var p float64
		if err := json.Unmarshal(raw, &p); err != nil || p < 0 || p > 1 {
			return nil, fmt.Errorf("BPE dropout %s: %w", raw, api.ErrCorrupt)
		}
		if p > 0 {
			return nil, fmt.Errorf("BPE dropout %g (random merges): %w", p, api.ErrUnsupported)
		}
	}
	var vocab64 map[string]int64
	if err := o.decode("vocab", &vocab64); err != nil {
		return nil, err
	}
	vocab := make(map[string]int32, len(vocab64))
	for tok, id := range vocab64 {
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("vocabulary token %q has id %d: %w", tok, id, api.ErrCorrupt)
		}
		vocab[tok] = int32(id)
	}
	merges, err := parseMerges(o["merges"])
	if err != nil {
		return nil, err
	}
	return newBPE(vocab, merges, opts)
}

// parseMerges reads the merges list in either form: "a b" strings (the
// legacy form, where lines starting with "#version" are skipped) or
// ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, fmt.Errorf("BPE model has no merges: %w", api.ErrCorrupt)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("BPE merges: %v: %w", err, api.ErrCorrupt)
	}
	merges := make([][2]string, 0, len(items))
	for i, item := range items {
		item = bytes.TrimSpace(item)
		if len(item) > 0 && item[0] == '"' {
			var s string
			if err := json.Unmarshal(item, &s); err != nil {
				return nil, fmt.Errorf("merge %d: %v: %w", i, err, api.ErrCorrupt)
			}
			if strings.HasPrefix(s, "#version") {
				continue
			}
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("merge %d %q is not two tokens separated by a space: %w", i, s, api.ErrCorrupt)
			}
			merges = append(merges, [2]string{a, b})
			continue
		}
		var pair []string
		if err := json.Unmarshal(item, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("merge %d %s is neither \"a b\" nor [\"a\", \"b\"]: %w", i, item, api.ErrCorrupt)
		}
		merges = append(merges, [2]string{pair[0], pair[1]})
	}
	return merges, nil
}

// object is a JSON object with its values still encoded.
type object map[string]json.RawMessage

// isNull reports an absent or null JSON value.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// parseObject decodes a JSON object.
func parseObject(raw []byte, what string) (object, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil || o == nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", what, api.ErrCorrupt)
	}
	return o, nil
}

// parseComponent decodes a component object and its "type".
func parseComponent(raw []byte, what string, depth int) (object, string, error) {
	if depth > maxNesting {
		return nil, "", fmt.Errorf("%s nested more than %d deep: %w", what, maxNesting, api.ErrCorrupt)
	}
	o, err := parseObject(raw, what)
	if err != nil {
		return nil, "", err
	}
	typ, err := o.requiredString("type")
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	return o, typ, nil
}

// decode decodes the value of key into v; the key must be present.
func (o object) decode(key string, v any) error {
	raw, ok := o[key]
	if !ok || isNull(raw) {
		return fmt.Errorf("missing %q: %w", key, api.ErrCorrupt)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%q: %v: %w", key, err, api.ErrCorrupt)
	}
	return nil
}

// requiredString returns the string value of key.
func (o object) requiredString(key string) (string, error) {
	var s string
	if err := o.decode(key, &s); err != nil {
		return "", err
	}
	return s, nil
}

// optionalString returns the string value of key, or def when it is
// absent or null.
func (o object) optionalString(key, def string) (string, error) {
	if raw, ok := o[key]; !ok || isNull(raw) {
		return def, nil
	}
	return o.requiredString(key)
}

// boolean returns the boolean value of key, or def when it is absent or
// null.
func (o object) boolean(key string, def bool) (bool, error) {
	if raw, ok := o[key]; !ok || isNull(raw) {
		return def, nil
	}
	var b bool
	err := o.decode(key, &b)
	return b, err
}

// count returns the non-negative integer value of key (0 when absent).
func (o object) count(key string) (int, error) {
	if raw, ok := o[key]; !ok || isNull(raw) {
		return 0, nil
	}
	var n int64
	if err := o.decode(key, &n); err != nil {
		return 0, err
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("%q is %d: %w", key, n, api.ErrCorrupt)
	}
	return int(n), nil
}

// char returns the value of key, a string of exactly one character.
func (o object) char(key string) (rune, error) {
	s, err := o.requiredString(key)
	if err != nil {
		return 0, err
	}
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 || size != len(s) || r == utf8.RuneError {
		return 0, fmt.Errorf("%q must be one character, not %q: %w", key, s, api.ErrCorrupt)
	}
	return r, nil
}

// list returns the elements of the array value of key.
func (o object) list(key string) ([]json.RawMessage, error) {
	var items []json.RawMessage
	err := o.decode(key, &items)
	return items, err
}

// parseSequence parses each element of the array value of key with parse,
// naming the failing element (what and its index) in the error: the
// "Sequence" of normalizers, pre-tokenizers, post-processors and decoders.
func parseSequence[T any](o object, key, what string, parse func(raw []byte) (T, error)) ([]T, error) {
	items, err := o.list(key)
	if err != nil {
		return nil, err
	}
	seq := make([]T, 0, len(items))
	for i, item := range items {
		v, err := parse(item)
		if err != nil {
			return nil, fmt.Errorf("%s %d of sequence: %w", what, i, err)
		}
		seq = append(seq, v)
	}
	return seq, nil
}

// pattern reads a split pattern: {"String": s} or {"Regex": r}.
func (o object) pattern(key string) (pattern, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := o.decode(key, &p); err != nil {
		return nil, err
	}
	switch {
	case p.String != nil && p.Regex == nil:
		return literalPattern(*p.String), nil
	case p.Regex != nil && p.String == nil:
		return compilePattern(*p.Regex)
	}
	return nil, fmt.Errorf("%q must have exactly one of String and Regex: %w", key, api.ErrCorrupt)
}

// behavior reads a split behaviour name; def < 0 makes it required.
func (o object) behavior(key string, def splitBehavior) (splitBehavior, error) {
	if raw, ok := o[key]; (!ok || isNull(raw)) && def >= 0 {
		return def, nil
	}
	s, err := o.requiredString(key)
	if err != nil {
		return 0, err
	}
	switch s {
	case "Removed":
		return splitRemoved, nil
	case "Isolated":
		return splitIsolated, nil
	case "MergedWithPrevious":
		return splitMergedWithPrevious, nil
	case "MergedWithNext":
		return splitMergedWithNext, nil
	case "Contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("split behavior %q: %w", s, api.ErrCorrupt)
}

// prependScheme reads a Metaspace prepend scheme: "prepend_scheme", or in
// older files the boolean "add_prefix_space"; the default is "always".
func (o object) prependScheme() (int, error) {
	if raw, ok := o["prepend_scheme"]; ok && !isNull(raw) {
		s, err := o.requiredString("prepend_scheme")
		if err != nil {
			return 0, err
		}
		switch s {
		case "always":
			return prependAlways, nil
		case "first":
			return prependFirst, nil
		case "never":
			return prependNever, nil
		}
		return 0, fmt.Errorf("prepend_scheme %q: %w", s, api.ErrCorrupt)
	}
	add, err := o.boolean("add_prefix_space", true)
	if err != nil || add {
		return prependAlways, err
	}
	return prependNever, nil
}
