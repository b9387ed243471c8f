package tokenizer

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// loadFixture loads testdata/<name>.json.
func loadFixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestEncodeBatch checks that the parallel batch gives what Encode gives.
func TestEncodeBatch(t *testing.T) {
	tok := loadFixture(t, "cl100k")
	r := rand.New(rand.NewPCG(5, 6))
	texts := make([]string, 200)
	for i := range texts {
		texts[i] = randomText(r, 60)
	}
	got, err := tok.EncodeBatch(texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		want, err := tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got[i], want) {
			t.Fatalf("text %d %q: batch %v, single %v", i, text, got[i], want)
		}
	}
	if _, err := tok.EncodeBatch([]string{"ok", "bad \xff"}); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("invalid UTF-8 in a batch: %v", err)
	}
	if out, err := tok.EncodeBatch(nil); err != nil || len(out) != 0 {
		t.Errorf("empty batch: %v, %v", out, err)
	}
}

// TestEncodeFull checks tokens, offsets and the special-token mask.
func TestEncodeFull(t *testing.T) {
	tok := loadFixture(t, "llama")
	text := "hi <s>"
	e, err := tok.EncodeFull(text, true)
	if err != nil {
		t.Fatal(err)
	}
	n := len(e.IDs)
	if len(e.Tokens) != n || len(e.Offsets) != n || len(e.Special) != n {
		t.Fatalf("lengths %d %d %d %d", n, len(e.Tokens), len(e.Offsets), len(e.Special))
	}
	if e.IDs[0] != 1 || !e.Special[0] || e.Offsets[0] != [2]int{0, 0} || e.Tokens[0] != "<s>" {
		t.Errorf("template BOS: id %d special %v offsets %v token %q", e.IDs[0], e.Special[0], e.Offsets[0], e.Tokens[0])
	}
	last := n - 1
	if e.IDs[last] != 1 || e.Special[last] || text[e.Offsets[last][0]:e.Offsets[last][1]] != "<s>" {
		t.Errorf("matched <s>: id %d special %v offsets %v", e.IDs[last], e.Special[last], e.Offsets[last])
	}
	plain, err := tok.EncodeFull(text, false)
	if err != nil || len(plain.IDs) != n-1 {
		t.Errorf("without special tokens: %v, %v", plain, err)
	}
	if _, err := tok.Encode("\xc3("); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

// TestDecodeErrors checks ids outside the vocabulary.
func TestDecodeErrors(t *testing.T) {
	tok := loadFixture(t, "gpt2")
	for _, id := range []int{-1, tok.VocabSize(), 1 << 40} {
		if _, err := tok.Decode([]int{5, id}); !errors.Is(err, api.ErrOutOfRange) {
			t.Errorf("id %d: %v", id, err)
		}
	}
	if s, err := tok.Decode(nil); err != nil || s != "" {
		t.Errorf("empty: %q, %v", s, err)
	}
}

// TestVocabulary checks the lookups and the vocabulary size.
func TestVocabulary(t *testing.T) {
	tok := loadFixture(t, "wordbpe")
	if tok.VocabSize() != 1001 {
		t.Errorf("VocabSize = %d, want 1001", tok.VocabSize())
	}
	if id, ok := tok.TokenToID("New York"); !ok || id != 1000 {
		t.Errorf("TokenToID(added) = %d, %v", id, ok)
	}
	if s, ok := tok.IDToToken(1000); !ok || s != "new york" {
		t.Errorf("IDToToken(normalized added) = %q, %v", s, ok)
	}
	id, ok := tok.TokenToID("in")
	if !ok {
		t.Fatal("TokenToID(in) missing")
	}
	if s, ok := tok.IDToToken(id); !ok || s != "in" {
		t.Errorf("IDToToken(%d) = %q, %v", id, s, ok)
	}
	if _, ok := tok.TokenToID("no such token"); ok {
		t.Error("TokenToID found a missing token")
	}
	if _, ok := tok.IDToToken(5000); ok {
		t.Error("IDToToken found a missing id")
	}
	added := tok.AddedTokens()
	if len(added) != 3 || added[2].Content != "New York" || !added[2].Normalized || added[0].Content != "[UNK]" || !added[0].Special {
		t.Errorf("AddedTokens = %+v", added)
	}
}

// TestSpecialTokens checks the ids guessed from each fixture and the model
// configuration override.
func TestSpecialTokens(t *testing.T) {
	for _, tc := range []struct {
		name string
		want SpecialTokens
	}{
		{"gpt2", SpecialTokens{BOS: -1, EOS: 0, PAD: -1, UNK: -1}},
		{"neox", SpecialTokens{BOS: -1, EOS: 0, PAD: 1, UNK: -1}},
		{"roberta", SpecialTokens{BOS: 0, EOS: 2, PAD: 1, UNK: -1}},
		{"gpt2_padded", SpecialTokens{BOS: -1, EOS: 0, PAD: 0, UNK: -1}},
		{"llama", SpecialTokens{BOS: 1, EOS: 2, PAD: -1, UNK: 0}},
		{"metaspace", SpecialTokens{BOS: 1, EOS: 2, PAD: -1, UNK: 0}},
		{"cl100k", SpecialTokens{BOS: 0, EOS: 1, PAD: -1, UNK: -1}},
		{"wordbpe", SpecialTokens{BOS: -1, EOS: -1, PAD: 1, UNK: 0}},
	} {
		if got := loadFixture(t, tc.name).Special(); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	tok := loadFixture(t, "gpt2")
	if err := tok.UseModelConfig([]byte(`{"bos_token_id": 0, "eos_token_id": [0, 1], "pad_token_id": null}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Special(), (SpecialTokens{BOS: 0, EOS: 0, PAD: -1, UNK: -1}); got != want {
		t.Errorf("after config: %+v, want %+v", got, want)
	}
	if err := tok.UseModelConfig([]byte(`{"eos_token_id": 123456}`)); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("id out of range: %v", err)
	}
	if err := tok.UseModelConfig([]byte(`{"eos_token_id": "x"}`)); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("bad id: %v", err)
	}
}

// TestConcurrentEncode checks that goroutines sharing a tokenizer (and its
// word cache) get the results of a sequential run; run it with -race.
func TestConcurrentEncode(t *testing.T) {
	tok := loadFixture(t, "metaspace")
	r := rand.New(rand.NewPCG(9, 10))
	texts := make([]string, 100)
	want := make([][]int, len(texts))
	for i := range texts {
		texts[i] = randomText(r, 40)
	}
	ref := loadFixture(t, "metaspace")
	for i, text := range texts {
		var err error
		if want[i], err = ref.Encode(text); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for k := range texts {
				i := (k + 25*g) % len(texts)
				got, err := tok.Encode(texts[i])
				if err == nil && !slices.Equal(got, want[i]) {
					err = errors.New("ids differ for " + texts[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
