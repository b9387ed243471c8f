package tokenizer

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestTrainSpecialTokens checks that repeated and empty special tokens,
// and a vocabulary too small for them and the bytes, are refused.
func TestTrainSpecialTokens(t *testing.T) {
	for _, tc := range []struct {
		cfg  TrainConfig
		name string // in the message
	}{
		{TrainConfig{VocabSize: 1000, SpecialTokens: []string{"a", "a"}}, `"a"`},
		{TrainConfig{VocabSize: 1000, SpecialTokens: []string{"<s>", "</s>", "<s>"}}, `"<s>"`},
		{TrainConfig{VocabSize: 1000, SpecialTokens: []string{"<s>", ""}}, "special token 1"},
		{TrainConfig{VocabSize: 257, SpecialTokens: []string{"<s>", "</s>"}}, "257"},
		{TrainConfig{VocabSize: 255}, "255"},
	} {
		_, err := NewTrainer(tc.cfg)
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
	if _, err := NewTrainer(TrainConfig{VocabSize: 258, SpecialTokens: []string{"<s>", "</s>"}}); err != nil {
		t.Errorf("smallest vocabulary: %v", err)
	}
}

// randomCorpus returns n texts of random words: many distinct words, so
// that training has many pairs to merge.
func randomCorpus(n, size int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	texts := make([]string, n)
	for i := range texts {
		var b strings.Builder
		for b.Len() < size {
			for range 2 + r.IntN(10) {
				b.WriteByte(byte('a' + r.IntN(26)))
			}
			b.WriteString([]string{" ", " ", ", ", ".\n", "\n\t"}[r.IntN(5)])
		}
		texts[i] = b.String()
	}
	return texts
}

// TestTrainCancel checks that FeedContext and TrainContext stop promptly
// when their context is cancelled, at any point, with an error wrapping
// context.Canceled, and that the trainer still works afterwards.
func TestTrainCancel(t *testing.T) {
	corpus := randomCorpus(200, 20<<10)
	tr, err := NewTrainer(TrainConfig{VocabSize: 30000, SpecialTokens: []string{"<|endoftext|>"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.FeedContext(ctx, corpus); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled feed: %v", err)
	}
	if _, err := tr.TrainContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled train: %v", err)
	}
	// One big text, cancelled while it is split.
	big := strings.Repeat(corpus[0], 400)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err = tr.FeedContext(ctx, []string{big})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("feed of %d bytes: %v", len(big), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("feed returned %v after cancellation", d)
	}
	if err := tr.FeedContext(context.Background(), corpus); err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{0, 5 * time.Millisecond, 30 * time.Millisecond, 150 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		var cancelled time.Time
		time.AfterFunc(delay, func() {
			cancelled = time.Now()
			cancel()
		})
		_, err := tr.TrainContext(ctx)
		end := time.Now()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %v: %v", delay, err)
		}
		if d := end.Sub(cancelled); d > time.Second {
			t.Errorf("cancelled after %v: returned %v later", delay, d)
		} else {
			t.Logf("cancelled after %v: returned %v later", delay, d)
		}
	}
	// The words are kept: a later Train learns from them.
	small, err := NewTrainer(TrainConfig{VocabSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	small.Feed(corpus[:5])
	if _, err := small.Train(); err != nil {
		t.Fatal(err)
	}
}

// TestTrainProgress checks the progress calls: merges done, rising, out of
// the merges wanted, the last one with all the merges learned.
func TestTrainProgress(t *testing.T) {
	var calls [][2]int
	tr, err := NewTrainer(TrainConfig{VocabSize: 2000, SpecialTokens: []string{"<pad>"}, Progress: func(done, total int) {
		calls = append(calls, [2]int{done, total})
	}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Feed(randomCorpus(20, 4<<10))
	out, err := tr.Train()
	if err != nil {
		t.Fatal(err)
	}
	var got trainedModel
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("no progress")
	}
	last := calls[len(calls)-1]
	if last != [2]int{len(got.Model.Vocab) - 257, 2000 - 257} {
		t.Errorf("last progress %v, vocabulary of %d", last, len(got.Model.Vocab))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0] < calls[i-1][0] {
			t.Errorf("progress goes back: %v", calls)
		}
	}
}
