package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

// parityCase is one text of testdata/parity.json with what Hugging Face
// tokenizers produced for it (see scripts/make_tokenizer_fixtures.py).
type parityCase struct {
	Text           string   `json:"text"`
	IDs            []int    `json:"ids"`
	IDsPlain       []int    `json:"ids_plain"`
	Offsets        [][2]int `json:"offsets"` // nil when not recorded
	Decoded        string   `json:"decoded"`
	DecodedSpecial string   `json:"decoded_special"`
}

// parityFile is testdata/parity.json: the cases by tokenizer name, and for
// some tokenizers the ids of encode_batch over all the texts.
type parityFile struct {
	Cases    map[string][]parityCase `json:"cases"`
	Batches  map[string][][]int      `json:"batches"`
	Variants []parityVariant         `json:"variants"`
}

// parityVariant is a fixture with some top-level keys of its
// tokenizer.json replaced, and the cases recorded with it.
type parityVariant struct {
	Name     string                     `json:"name"`
	Base     string                     `json:"base"`
	Override map[string]json.RawMessage `json:"override"`
	Cases    []parityCase               `json:"cases"`
}

// loadParity reads the recorded cases.
func loadParity(t *testing.T) parityFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "parity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f parityFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 10 || len(f.Batches) < 1 || len(f.Variants) < 10 {
		t.Fatalf("parity.json has %d tokenizers, %d batches, %d variants", len(f.Cases), len(f.Batches), len(f.Variants))
	}
	return f
}

// TestParity checks ids, offsets and decoded text against Hugging Face for
// every tokenizer and text of the fixtures.
func TestParity(t *testing.T) {
	f := loadParity(t)
	all := f.Cases
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			tok, err := Load(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			checkCases(t, tok, all[name])
			want, ok := f.Batches[name]
			if !ok {
				return
			}
			texts := make([]string, len(all[name]))
			for i, c := range all[name] {
				texts[i] = c.Text
			}
			got, err := tok.EncodeBatch(texts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("batch item %d %q:\n got %v\nwant %v", i, texts[i], got[i], want[i])
				}
			}
		})
	}
}

// checkCases compares a tokenizer with the recorded cases.
func checkCases(t *testing.T, tok *Tokenizer, cases []parityCase) {
	t.Helper()
	for i, c := range cases {
		ids, err := tok.Encode(c.Text)
		if err != nil {
			t.Fatalf("case %d %q: %v", i, c.Text, err)
		}
		if !slices.Equal(ids, c.IDs) {
			t.Errorf("case %d %q:\n got ids %v\nwant ids %v", i, c.Text, ids, c.IDs)
		}
		enc, err := tok.EncodeFull(c.Text, false)
		if err != nil {
			t.Fatalf("case %d %q: %v", i, c.Text, err)
		}
		if !slices.Equal(enc.IDs, c.IDsPlain) {
			t.Errorf("case %d %q without special tokens:\n got %v\nwant %v", i, c.Text, enc.IDs, c.IDsPlain)
		}
		if c.Offsets != nil && !slices.Equal(enc.Offsets, c.Offsets) {
			t.Errorf("case %d %q offsets:\n got %v\nwant %v\ntokens %q", i, c.Text, enc.Offsets, c.Offsets, enc.Tokens)
		}
		if got, err := tok.Decode(c.IDs); err != nil || got != c.Decoded {
			t.Errorf("case %d: Decode = %q, %v; want %q", i, got, err, c.Decoded)
		}
		if got, err := tok.DecodeWith(c.IDs, false); err != nil || got != c.DecodedSpecial {
			t.Errorf("case %d: DecodeWith(false) = %q, %v; want %q", i, got, err, c.DecodedSpecial)
		}
	}
}

// TestParityVariants checks the component variants: a fixture with some
// components replaced.
func TestParityVariants(t *testing.T) {
	for _, v := range loadParity(t).Variants {
		t.Run(v.Name, func(t *testing.T) {
			tok := loadVariant(t, v)
			checkCases(t, tok, v.Cases)
		})
	}
}

// loadVariant loads the fixture v.Base with v's components replaced.
func loadVariant(t *testing.T, v parityVariant) *Tokenizer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", v.Base+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	for k, raw := range v.Override {
		file[k] = raw
	}
	if data, err = json.Marshal(file); err != nil {
		t.Fatal(err)
	}
	tok, err := FromJSON(data)
	if err != nil {
		t.Fatalf("variant %s: %v", v.Name, err)
	}
	return tok
}
