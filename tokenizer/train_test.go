package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// trainedModel is the part of a tokenizer.json a trainer decides.
type trainedModel struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Model struct {
		Vocab  map[string]int `json:"vocab"`
		Merges [][2]string    `json:"merges"`
	} `json:"model"`
}

// TestTrainMatchesHF trains on the fixture corpus with the settings the
// fixture script gave Hugging Face's BpeTrainer and compares vocabulary,
// merges and special tokens with what it learned.
func TestTrainMatchesHF(t *testing.T) {
	var corpus []string
	data, err := os.ReadFile(filepath.Join("testdata", "train_corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &corpus); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(TrainConfig{VocabSize: 600, MinFrequency: 2, SpecialTokens: []string{"<|endoftext|>", "<pad>"}})
	if err != nil {
		t.Fatal(err)
	}
	// Feed in two parts, to check that counts add up.
	tr.Feed(corpus[:len(corpus)/2])
	tr.Feed(corpus[len(corpus)/2:])
	out, err := tr.Train()
	if err != nil {
		t.Fatal(err)
	}
	var got, want trainedModel
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("trained tokenizer.json: %v", err)
	}
	expected, err := os.ReadFile(filepath.Join("testdata", "train_expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(expected, &want); err != nil {
		t.Fatal(err)
	}
	if len(got.Model.Vocab) != 600 || len(got.Model.Vocab) != len(want.Model.Vocab) {
		t.Errorf("vocabulary of %d tokens, want %d", len(got.Model.Vocab), len(want.Model.Vocab))
	}
	for tok, id := range want.Model.Vocab {
		if got.Model.Vocab[tok] != id {
			t.Errorf("token %q: id %d, want %d", tok, got.Model.Vocab[tok], id)
		}
	}
	if !slices.Equal(got.Model.Merges, want.Model.Merges) {
		for i := range min(len(got.Model.Merges), len(want.Model.Merges)) {
			if got.Model.Merges[i] != want.Model.Merges[i] {
				t.Fatalf("merge %d: %q, want %q (%d and %d merges)", i, got.Model.Merges[i], want.Model.Merges[i], len(got.Model.Merges), len(want.Model.Merges))
			}
		}
		t.Fatalf("%d merges, want %d", len(got.Model.Merges), len(want.Model.Merges))
	}
	if len(got.AddedTokens) != 2 || got.AddedTokens[1].Content != "<pad>" || got.AddedTokens[1].ID != 1 || !got.AddedTokens[1].Special {
		t.Errorf("added tokens %+v", got.AddedTokens)
	}
	// The result loads and encodes like the file Hugging Face wrote.
	ours, err := FromJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := FromJSON(expected)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range corpus {
		a, err1 := ours.Encode(text)
		b, err2 := theirs.Encode(text)
		if err1 != nil || err2 != nil || !slices.Equal(a, b) {
			t.Fatalf("%q: %v %v, %v %v", text, a, err1, b, err2)
		}
		if back, err := ours.DecodeWith(a, false); err != nil || back != text {
			t.Fatalf("decode(encode(%q)) = %q, %v", text, back, err)
		}
	}
}

// TestTrainConfig checks the configuration errors and a minimum frequency
// that stops the merges early.
func TestTrainConfig(t *testing.T) {
	for _, cfg := range []TrainConfig{{VocabSize: 0}, {VocabSize: 300, MinFrequency: -1}} {
		if _, err := NewTrainer(cfg); !errors.Is(err, api.ErrConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	tr, err := NewTrainer(TrainConfig{VocabSize: 1000, MinFrequency: 3})
	if err != nil {
		t.Fatal(err)
	}
	tr.Feed([]string{"aaaa abab", "abab"})
	out, err := tr.Train()
	if err != nil {
		t.Fatal(err)
	}
	var got trainedModel
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	// The words are "aaaa", "abab" and "Ġabab". "a b" occurs 4 times and
	// "a a" 3 times; after them, "ab ab" occurs twice and "aa aa" once, too
	// few to merge.
	if want := [][2]string{{"a", "b"}, {"a", "a"}}; !slices.Equal(got.Model.Merges, want) {
		t.Errorf("merges %q, want %q", got.Model.Merges, want)
	}
	if len(got.Model.Vocab) != 256+2 {
		t.Errorf("vocabulary of %d tokens", len(got.Model.Vocab))
	}
}
