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
	Offsets        [][2]int `json:"offsets"`
	Decoded        string   `json:"decoded"`
	DecodedSpecial string   `json:"decoded_special"`
}

// loadParity reads the recorded cases, by tokenizer name.
func loadParity(t *testing.T) map[string][]parityCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "parity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases map[string][]parityCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 8 {
		t.Fatalf("parity.json has %d tokenizers, want at least 8", len(f.Cases))
	}
	return f.Cases
}

// TestParity checks ids, offsets and decoded text against Hugging Face for
// every tokenizer and text of the fixtures.
func TestParity(t *testing.T) {
	all := loadParity(t)
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
			for i, c := range all[name] {
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
				if !slices.Equal(enc.Offsets, c.Offsets) {
					t.Errorf("case %d %q offsets:\n got %v\nwant %v\ntokens %q", i, c.Text, enc.Offsets, c.Offsets, enc.Tokens)
				}
				if got, err := tok.Decode(c.IDs); err != nil || got != c.Decoded {
					t.Errorf("case %d: Decode = %q, %v; want %q", i, got, err, c.Decoded)
				}
				if got, err := tok.DecodeWith(c.IDs, false); err != nil || got != c.DecodedSpecial {
					t.Errorf("case %d: DecodeWith(false) = %q, %v; want %q", i, got, err, c.DecodedSpecial)
				}
			}
		})
	}
}
