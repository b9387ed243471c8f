package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// Tokenizer encodes text to token ids and decodes ids to text, exactly as
// the Hugging Face tokenizer.json it was loaded from. It is safe for
// concurrent use.
type Tokenizer struct {
	model         *bpeModel
	normalizer    normalizer
	preTokenizer  preTokenizer
	postProcessor postProcessor
	decoder       decoder

	added          map[int32]*AddedToken
	addedByContent map[string]int32
	// addedText is the string an added token decodes to: its content, run
	// through the normalizer when the token is normalized (Hugging Face
	// 0.23 does the same).
	addedText   map[int32]string
	addedOrder  []*AddedToken
	rawMatcher  *matcher // added tokens matched in the raw text
	normMatcher *matcher // added tokens matched in the normalized text

	// alwaysTrack is set when tokenization itself depends on alignments
	// (Metaspace with prepend_scheme "first"), so they are kept even when
	// offsets are not asked for.
	alwaysTrack bool
	vocabSize   int
	special     SpecialTokens
	truncation  *truncation // nil: no truncation
	padding     *padding    // nil: no padding
	nAdded      int         // special tokens the post-processor adds
	stream      streamPlan  // where EncodeReader may cut the text
}

// Encoding is the full result of encoding a text.
type Encoding struct {
	// IDs are the token ids.
	IDs []int
	// Tokens are the token strings: vocabulary entries, the matched text
	// of added tokens, the template's strings for special tokens.
	Tokens []string
	// Offsets are the byte ranges [start, end) of the original text each
	// token comes from; tokens added by the post-processor, and padding,
	// have [0, 0]. They cover the same characters as the character offsets
	// of Hugging Face's Python API.
	Offsets [][2]int
	// Special marks the tokens added by the post-processor (template
	// tokens, CLS and SEP) and padding.
	Special []bool
}

// SpecialTokens holds the ids of the control tokens a model uses; -1 means
// none.
type SpecialTokens struct {
	BOS, EOS, PAD, UNK int
}

// Encode returns the token ids of text, with the special tokens of the
// post-processor's template (as Hugging Face's encode does by default), and
// the file's truncation and padding, if it sets them.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	e, err := t.encode(text, true, false, true)
	if err != nil {
		return nil, err
	}
	return e.IDs, nil
}

// EncodeFull encodes text with token strings and offsets; addSpecial says
// whether the template's special tokens are added. Padding tokens, like
// template tokens, are marked Special.
func (t *Tokenizer) EncodeFull(text string, addSpecial bool) (*Encoding, error) {
	return t.encode(text, addSpecial, true, true)
}

// EncodeRaw encodes text for a model as a stretch of running text, the
// way a corpus is tokenized for training or scoring: the normalizer,
// pre-tokenizer, BPE and added tokens, but none of the file's truncation,
// post-processor special tokens or padding (a tokenizer.json made for
// fine-tuning may truncate to 512 tokens, which would silently cut every
// document). offsets asks for token strings and offsets, the pipeline's:
// not trimmed by a post-processor (a byte-level tokenizer's ranges then
// cover the text end to end, each token's leading space included);
// without it only IDs is set.
func (t *Tokenizer) EncodeRaw(text string, offsets bool) (_ *Encoding, err error) {
	defer api.Recover(&err)
	if offsets {
		return t.encodeFull(text)
	}
	ids, err := t.appendIDs(text, make([]int, 0, len(text)/3+1))
	if err != nil {
		return nil, err
	}
	return &Encoding{IDs: ids}, nil
}

// EncodeBatch encodes the texts in parallel over the available cores. The
// result is the same as calling Encode on each, except that padding to the
// longest sequence (the file's "BatchLongest" padding) pads to the longest
// of the batch, as Hugging Face's encode_batch does.
func (t *Tokenizer) EncodeBatch(texts []string) ([][]int, error) {
	return t.EncodeBatchWith(texts, true)
}

// EncodeBatchWith is EncodeBatch with or without the post-processor's
// special tokens (addSpecial), as Hugging Face's encode_batch with
// add_special_tokens.
func (t *Tokenizer) EncodeBatchWith(texts []string, addSpecial bool) ([][]int, error) {
	out := make([][]int, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) {
					return
				}
				e, err := t.encode(texts[i], addSpecial, false, false)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("text %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				out[i] = e.IDs
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if t.padding != nil {
		longest := 0
		for _, ids := range out {
			longest = max(longest, len(ids))
		}
		n := t.padding.target(longest)
		for i := range out {
			e := Encoding{IDs: out[i]}
			t.padding.pad(&e, n, false)
			out[i] = e.IDs
		}
	}
	return out, nil
}

// encode runs the pipeline. full asks for tokens and offsets; pad applies
// the padding as for a batch of one.
func (t *Tokenizer) encode(text string, addSpecial, full, pad bool) (_ *Encoding, err error) {
	defer api.Recover(&err)
	var e *Encoding
	if full {
		if e, err = t.encodeFull(text); err != nil {
			return nil, err
		}
	} else {
		ids, err := t.appendIDs(text, make([]int, 0, len(text)/3+1))
		if err != nil {
			return nil, err
		}
		e = &Encoding{IDs: ids}
	}
	if t.truncation != nil {
		if err := t.truncation.truncate(e, addSpecial, t.nAdded, full); err != nil {
			return nil, fmt.Errorf("encode: %w", err)
		}
	}
	if t.postProcessor != nil {
		t.postProcessor.process(e, text, addSpecial, full)
	}
	if pad && t.padding != nil {
		t.padding.pad(e, t.padding.target(len(e.IDs)), full)
	}
	return e, nil
}

// appendIDs appends to ids the token ids of text, before truncation and
// post-processing: the pipeline without offsets.
func (t *Tokenizer) appendIDs(text string, ids []int) (_ []int, err error) {
	defer api.Recover(&err)
	if !utf8.ValidString(text) {
		return ids, fmt.Errorf("encode: text is not valid UTF-8: %w", api.ErrCorrupt)
	}
	parts, err := t.extract(text, t.alwaysTrack)
	if err != nil {
		return ids, err
	}
	word := func(n nstr) error {
		var err error
		ids, err = t.model.tokenizeIDs(n.s, ids)
		return err
	}
	for _, p := range parts {
		switch {
		case p.added >= 0:
			ids = append(ids, int(p.added))
		case t.preTokenizer != nil:
			err = t.preTokenizer.each(p.n, word)
		default:
			err = word(p.n)
		}
		if err != nil {
			return ids, fmt.Errorf("encode: %w", err)
		}
	}
	return ids, nil
}

// encodeFull runs the pipeline with tokens and offsets, before truncation
// and post-processing.
func (t *Tokenizer) encodeFull(text string) (*Encoding, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("encode: text is not valid UTF-8: %w", api.ErrCorrupt)
	}
	parts, err := t.extract(text, true)
	if err != nil {
		return nil, err
	}
	e := &Encoding{IDs: make([]int, 0, len(text)/3+1)}
	var toks []token
	word := func(n nstr) error {
		var err error
		if toks, err = t.model.tokenize(n.s, toks[:0]); err != nil {
			return err
		}
		for _, tk := range toks {
			r := n.originalRange(int(tk.lo), int(tk.hi))
			e.IDs = append(e.IDs, int(tk.id))
			e.Tokens = append(e.Tokens, t.model.tokens[tk.id])
			e.Offsets = append(e.Offsets, [2]int{r.start, r.end})
			e.Special = append(e.Special, false)
		}
		return nil
	}
	for _, p := range parts {
		switch {
		case p.added >= 0:
			r := p.n.originalRange(0, len(p.n.s))
			e.IDs = append(e.IDs, int(p.added))
			e.Tokens = append(e.Tokens, p.n.s)
			e.Offsets = append(e.Offsets, [2]int{r.start, r.end})
			e.Special = append(e.Special, false)
		case t.preTokenizer != nil:
			err = t.preTokenizer.each(p.n, word)
		default:
			err = word(p.n)
		}
		if err != nil {
			return nil, fmt.Errorf("encode: %w", err)
		}
	}
	return e, nil
}

// extract matches the added tokens and normalizes the rest, as Hugging
// Face's AddedVocabulary::extract_and_normalize: tokens that match the raw
// text first, then, in each remaining piece once normalized, the tokens
// that match normalized text.
func (t *Tokenizer) extract(text string, track bool) ([]part, error) {
	whole := newNstr(text, track)
	raw := splitAdded(whole.slice(0, len(text)), t.rawMatcher, nil)
	parts := make([]part, 0, len(raw))
	for _, p := range raw {
		if p.added >= 0 {
			parts = append(parts, p)
			continue
		}
		if t.normalizer != nil {
			if err := t.normalizer.normalize(&p.n); err != nil {
				return nil, fmt.Errorf("normalize: %w", err)
			}
		}
		parts = splitAdded(p.n.slice(0, len(p.n.s)), t.normMatcher, parts)
	}
	out := parts[:0]
	for _, p := range parts {
		if p.added >= 0 || p.n.s != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// Decode returns the text of ids, leaving out special tokens (as Hugging
// Face's decode does by default).
func (t *Tokenizer) Decode(ids []int) (string, error) {
	return t.DecodeWith(ids, true)
}

// DecodeWith returns the text of ids; skipSpecial leaves out the added
// tokens marked special. An id outside the vocabulary is an error wrapping
// api.ErrOutOfRange.
func (t *Tokenizer) DecodeWith(ids []int, skipSpecial bool) (_ string, err error) {
	defer api.Recover(&err)
	tokens := make([]string, 0, len(ids))
	for i, id := range ids {
		if a, ok := t.added[int32(id)]; ok && id == int(int32(id)) {
			if skipSpecial && a.Special {
				continue
			}
			tokens = append(tokens, t.addedText[int32(id)])
			continue
		}
		s, ok := t.modelToken(id)
		if !ok {
			return "", fmt.Errorf("decode: id %d at position %d is not in the vocabulary: %w", id, i, api.ErrOutOfRange)
		}
		if skipSpecial {
			if aid, ok := t.addedByContent[s]; ok && t.added[aid].Special {
				continue
			}
		}
		tokens = append(tokens, s)
	}
	if t.decoder == nil {
		return strings.Join(tokens, " "), nil
	}
	pieces, err := t.decoder.decodeChain(tokens)
	if err != nil {
		return "", fmt.Errorf("decode: %w", err)
	}
	return strings.Join(pieces, ""), nil
}

// modelToken returns the model's token for id.
func (t *Tokenizer) modelToken(id int) (string, bool) {
	if id < 0 || id >= len(t.model.tokens) || !t.model.has[id] {
		return "", false
	}
	return t.model.tokens[id], true
}

// TokenToID returns the id of a token string (added tokens first, then the
// model's vocabulary).
func (t *Tokenizer) TokenToID(tok string) (int, bool) {
	if id, ok := t.addedByContent[tok]; ok {
		return int(id), true
	}
	id, ok := t.model.vocab[tok]
	return int(id), ok
}

// IDToToken returns the token string of an id (for a normalized added
// token, its normalized content, as Hugging Face gives).
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if s, ok := t.addedText[int32(id)]; ok && id == int(int32(id)) {
		return s, true
	}
	return t.modelToken(id)
}

// VocabSize returns one more than the largest token id, model and added
// tokens together: the number of rows an embedding table needs.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// AddedTokens returns the file's added tokens, in file order.
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, len(t.addedOrder))
	for i, a := range t.addedOrder {
		out[i] = *a
	}
	return out
}

// Special returns the ids of the special tokens. They are guessed from the
// file (the post-processor's template, the padding settings, the unknown
// token, and the usual names of added special tokens) unless set from a
// model configuration with UseModelConfig.
func (t *Tokenizer) Special() SpecialTokens { return t.special }

// Well-known contents of special tokens, by role, in order of preference.
var (
	bosNames = []string{"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"}
	eosNames = []string{"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"}
	padNames = []string{"<pad>", "<|pad|>", "<|padding|>", "[PAD]"}
)

// guessSpecial finds the special-token ids the file implies.
func (t *Tokenizer) guessSpecial() SpecialTokens {
	s := SpecialTokens{BOS: -1, EOS: -1, PAD: -1, UNK: -1}
	if t.model.unkToken != "" {
		if id, ok := t.TokenToID(t.model.unkToken); ok {
			s.UNK = id
		}
	}
	if cs := findClsSep(t.postProcessor); cs != nil {
		s.BOS, s.EOS = cs.cls.ids[0], cs.sep.ids[0]
	}
	if tp := findTemplate(t.postProcessor); tp != nil {
		seen := false
		for _, p := range tp.single {
			switch {
			case p.sequence:
				seen = true
			case !seen && s.BOS < 0 && len(tp.specials[p.special].ids) > 0:
				s.BOS = tp.specials[p.special].ids[0]
			case seen && s.EOS < 0 && len(tp.specials[p.special].ids) > 0:
				s.EOS = tp.specials[p.special].ids[0]
			}
		}
	}
	if t.padding != nil {
		s.PAD = t.padding.id
	}
	byName := func(cur int, names []string) int {
		if cur >= 0 {
			return cur
		}
		for _, n := range names {
			if id, ok := t.addedByContent[n]; ok && t.added[id].Special {
				return int(id)
			}
		}
		return -1
	}
	s.BOS = byName(s.BOS, bosNames)
	s.EOS = byName(s.EOS, eosNames)
	s.PAD = byName(s.PAD, padNames)
	return s
}

// findTemplate returns the template processor of a post-processor chain.
func findTemplate(p postProcessor) *templateProcessor {
	switch p := p.(type) {
	case *templateProcessor:
		return p
	case sequenceProcessor:
		for _, q := range p {
			if tp := findTemplate(q); tp != nil {
				return tp
			}
		}
	}
	return nil
}

// findClsSep returns the RoBERTa or BERT processor of a post-processor
// chain.
func findClsSep(p postProcessor) *clsSepProcessor {
	switch p := p.(type) {
	case *clsSepProcessor:
		return p
	case sequenceProcessor:
		for _, q := range p {
			if cs := findClsSep(q); cs != nil {
				return cs
			}
		}
	}
	return nil
}

// UseModelConfig sets the special-token ids from a model's config.json
// (bos_token_id, eos_token_id, pad_token_id; the first entry when the value
// is a list). Ids the configuration does not give are kept. It must not be
// called while the tokenizer is in use.
func (t *Tokenizer) UseModelConfig(configJSON []byte) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(configJSON, &c); err != nil {
		return fmt.Errorf("model config: %v: %w", err, api.ErrCorrupt)
	}
	for key, dst := range map[string]*int{"bos_token_id": &t.special.BOS, "eos_token_id": &t.special.EOS, "pad_token_id": &t.special.PAD} {
		raw, ok := c[key]
		if !ok || isNull(raw) {
			continue
		}
		var one int
		if err := json.Unmarshal(raw, &one); err != nil {
			var list []int
			if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
				return fmt.Errorf("model config %s is %s: %w", key, raw, api.ErrCorrupt)
			}
			one = list[0]
		}
		if one < 0 || one >= t.vocabSize {
			return fmt.Errorf("model config %s %d is outside the vocabulary of %d: %w", key, one, t.vocabSize, errors.Join(api.ErrOutOfRange, api.ErrConfig))
		}
		*dst = one
	}
	return nil
}
