package pybind

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
	"github.com/densessm/densessm/tokenizer"
)

// maxTokenizerFile caps a tokenizer.json read from disk, as
// tokenizer.Load does.
const maxTokenizerFile = 256 << 20

// Tokenizer is a Hugging Face tokenizer.json tokenizer. Its methods are
// safe to call from several threads at once.
type Tokenizer struct {
	t   *tokenizer.Tokenizer
	raw []byte // the tokenizer.json it was built from
}

// LoadTokenizer reads a tokenizer.json file.
func LoadTokenizer(path string) (_ *Tokenizer, err error) {
	defer api.Recover(&err)
	raw, err := readcap.File(path, maxTokenizerFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return TokenizerFromJSON(string(raw))
}

// TokenizerFromJSON builds a tokenizer from the contents of a
// tokenizer.json file.
func TokenizerFromJSON(data string) (_ *Tokenizer, err error) {
	defer api.Recover(&err)
	t, err := tokenizer.FromJSON([]byte(data))
	if err != nil {
		return nil, err
	}
	return &Tokenizer{t: t, raw: []byte(data)}, nil
}

// modelTokenizer returns dir's tokenizer (path instead, when not empty),
// or nil when dir has no tokenizer.json.
func modelTokenizer(dir, path string) (*Tokenizer, error) {
	if path != "" {
		return LoadTokenizer(path)
	}
	t, err := LoadTokenizer(filepath.Join(dir, "tokenizer.json"))
	if errors.Is(err, api.ErrNotFound) {
		return nil, nil
	}
	return t, err
}

// Save writes the tokenizer.json the tokenizer was built from to path,
// atomically.
func (t *Tokenizer) Save(path string) error {
	return atomicfile.WriteFile(path, t.raw)
}

// VocabSize returns the number of token ids, added tokens included.
func (t *Tokenizer) VocabSize() int { return t.t.VocabSize() }

// TokenToID returns the id of the token string tok, or -1 when the
// vocabulary has no such token.
func (t *Tokenizer) TokenToID(tok string) int {
	id, ok := t.t.TokenToID(tok)
	if !ok {
		return -1
	}
	return id
}

// IDToToken returns the token string of id ("" and an error when there is
// none).
func (t *Tokenizer) IDToToken(id int) (string, error) {
	s, ok := t.t.IDToToken(id)
	if !ok {
		return "", fmt.Errorf("id %d: no such token (vocabulary of %d): %w", id, t.t.VocabSize(), api.ErrOutOfRange)
	}
	return s, nil
}

// Special returns the ids of the control tokens as JSON: {"bos", "eos",
// "pad", "unk"}, -1 for none.
func (t *Tokenizer) Special() string {
	s := t.t.Special()
	b, _ := json.Marshal(map[string]int{"bos": s.BOS, "eos": s.EOS, "pad": s.PAD, "unk": s.UNK})
	return string(b)
}

// Encode encodes text as Hugging Face's encode does (addSpecial: with the
// post-processor's special tokens; the file's truncation and padding) and
// exports the ids as an Arrow int32 array into outArray/outSchema.
func (t *Tokenizer) Encode(text string, addSpecial bool, outArray, outSchema int64) (err error) {
	defer api.Recover(&err)
	out := cArray{outArray, outSchema}
	if err := out.check("ids"); err != nil {
		return err
	}
	e, err := t.t.EncodeFull(text, addSpecial)
	if err != nil {
		return err
	}
	exportInt32s(e.IDs, out)
	return nil
}

// EncodeBatch encodes the strings of the Arrow string array at
// textsArray/textsSchema in parallel, as Hugging Face's encode_batch does,
// and exports the ids as an Arrow list<int32> array into
// outArray/outSchema.
func (t *Tokenizer) EncodeBatch(textsArray, textsSchema int64, addSpecial bool, outArray, outSchema int64) (err error) {
	defer api.Recover(&err)
	out := cArray{outArray, outSchema}
	if err := out.check("ids"); err != nil {
		return err
	}
	texts, err := importStrings(cArray{textsArray, textsSchema}, "texts")
	if err != nil {
		return err
	}
	lists, err := t.t.EncodeBatchWith(texts, addSpecial)
	if err != nil {
		return err
	}
	exportIDLists(lists, out)
	return nil
}

// Decode returns the text of the token ids in the Arrow array at
// idsArray/idsSchema; skipSpecial leaves special tokens out.
func (t *Tokenizer) Decode(idsArray, idsSchema int64, skipSpecial bool) (_ string, err error) {
	defer api.Recover(&err)
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return "", err
	}
	ints := make([]int, len(ids))
	for i, id := range ids {
		ints[i] = int(id)
	}
	return t.t.DecodeWith(ints, skipSpecial)
}
