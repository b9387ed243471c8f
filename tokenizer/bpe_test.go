package tokenizer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// newTestBPE builds a model from a token list (ids in order) and merges.
func newTestBPE(t *testing.T, tokens []string, merges [][2]string, opts bpeOptions) *bpeModel {
	t.Helper()
	vocab := make(map[string]int32, len(tokens))
	for i, tok := range tokens {
		vocab[tok] = int32(i)
	}
	m, err := newBPE(vocab, merges, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tokenIDs returns the tokens (ids and offsets) of a piece.
func tokenIDs(t *testing.T, m *bpeModel, piece string) []token {
	t.Helper()
	toks, err := m.tokenize(piece, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := m.tokenize(piece, nil); err != nil || !slices.Equal(again, toks) {
		t.Fatalf("%q from the cache: %v, %v; want %v", piece, again, err, toks)
	}
	return toks
}

// TestBPEUnknown checks the unknown token, fused or not (the cases of
// Hugging Face's own tests).
func TestBPEUnknown(t *testing.T) {
	tokens := []string{"<unk>", "a", "b"}
	plain := newTestBPE(t, tokens, nil, bpeOptions{unkToken: "<unk>"})
	if got, want := tokenIDs(t, plain, "accb"), []token{{1, 0, 1}, {0, 1, 2}, {0, 2, 3}, {2, 3, 4}}; !slices.Equal(got, want) {
		t.Errorf("not fused: got %v, want %v", got, want)
	}
	fused := newTestBPE(t, tokens, nil, bpeOptions{unkToken: "<unk>", fuseUnk: true})
	if got, want := tokenIDs(t, fused, "accb"), []token{{1, 0, 1}, {0, 1, 3}, {2, 3, 4}}; !slices.Equal(got, want) {
		t.Errorf("fused: got %v, want %v", got, want)
	}
	// Without an unknown token, unknown characters are dropped; as in
	// Hugging Face, the offsets of what follows do not count them.
	none := newTestBPE(t, tokens, nil, bpeOptions{})
	if got, want := tokenIDs(t, none, "acb"), []token{{1, 0, 1}, {2, 1, 2}}; !slices.Equal(got, want) {
		t.Errorf("no unk: got %v, want %v", got, want)
	}
	// An unknown token missing from the vocabulary is an error when needed.
	missing := newTestBPE(t, tokens, nil, bpeOptions{unkToken: "<missing>"})
	if _, err := missing.tokenize("c", nil); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("missing unk: err = %v", err)
	}
}

// TestBPEByteFallback checks "<0xXX>" tokens for characters outside the
// vocabulary.
func TestBPEByteFallback(t *testing.T) {
	m := newTestBPE(t, []string{"<unk>", "<0x61>", "<0xC3>", "<0xA9>", "x"}, nil, bpeOptions{unkToken: "<unk>", byteFallback: true})
	if got, want := tokenIDs(t, m, "aéxc"), []token{{1, 0, 1}, {2, 1, 2}, {3, 2, 3}, {4, 3, 4}, {0, 4, 5}}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestBPEPrefixSuffix checks continuing_subword_prefix and
// end_of_word_suffix.
func TestBPEPrefixSuffix(t *testing.T) {
	m := newTestBPE(t, []string{"a", "##b", "##c", "ab", "abc"}, [][2]string{{"a", "##b"}, {"ab", "##c"}}, bpeOptions{prefix: "##"})
	if got, want := tokenIDs(t, m, "abc"), []token{{4, 0, 3}}; !slices.Equal(got, want) {
		t.Errorf("prefix: got %v, want %v", got, want)
	}
	s := newTestBPE(t, []string{"a", "b</w>", "ab</w>", "b"}, [][2]string{{"a", "b</w>"}}, bpeOptions{suffix: "</w>"})
	if got, want := tokenIDs(t, s, "ab"), []token{{2, 0, 2}}; !slices.Equal(got, want) {
		t.Errorf("suffix: got %v, want %v", got, want)
	}
	if got, want := tokenIDs(t, s, "ba"), []token{{3, 0, 1}}; !slices.Equal(got, want) {
		// "a" at the end needs "a</w>", which is unknown: dropped.
		t.Errorf("suffix: got %v, want %v", got, want)
	}
}

// TestBPEIgnoreMerges checks that a piece found whole in the vocabulary is
// one token even when the merges would not build it.
func TestBPEIgnoreMerges(t *testing.T) {
	tokens := []string{".", ":", ".:", ".:.:", "b", "e", "be"}
	merges := [][2]string{{".", ":"}, {"b", "e"}}
	on := newTestBPE(t, tokens, merges, bpeOptions{ignoreMerges: true})
	off := newTestBPE(t, tokens, merges, bpeOptions{})
	if got, want := tokenIDs(t, on, ".:.:"), []token{{3, 0, 4}}; !slices.Equal(got, want) {
		t.Errorf("ignore_merges: got %v, want %v", got, want)
	}
	if got, want := tokenIDs(t, off, ".:.:"), []token{{2, 0, 2}, {2, 2, 4}}; !slices.Equal(got, want) {
		t.Errorf("merges: got %v, want %v", got, want)
	}
}

// naiveMerge is the textbook BPE: repeatedly merge the leftmost pair of
// lowest rank.
func naiveMerge(m *bpeModel, ids []int32) []int32 {
	ids = slices.Clone(ids)
	for {
		best, at := int32(-1), -1
		var id int32
		for i := 0; i+1 < len(ids); i++ {
			if mi, ok := m.merges[pairKey(ids[i], ids[i+1])]; ok && (at < 0 || mi.rank < best) {
				best, at, id = mi.rank, i, mi.id
			}
		}
		if at < 0 {
			return ids
		}
		ids = slices.Replace(ids, at, at+2, id)
	}
}

// TestMergeAllMatchesNaive compares the priority-queue merge with the
// textbook algorithm on random words over a small alphabet with many
// overlapping merges.
func TestMergeAllMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m := randomMergesBPE(t, r, 60, 6)
	for i := 0; i < 2000; i++ {
		word := make([]byte, 1+r.IntN(40))
		ids := make([]int32, len(word))
		for k := range word {
			word[k] = "abc"[r.IntN(3)]
			ids[k] = m.vocab[string(word[k])]
		}
		var got []int32
		for _, tk := range tokenIDs(t, m, string(word)) {
			got = append(got, tk.id)
		}
		if want := naiveMerge(m, ids); !slices.Equal(got, want) {
			t.Fatalf("%s: got %v, want %v", word, got, want)
		}
	}
}

// TestNewBPEErrors checks that inconsistent models are rejected.
func TestNewBPEErrors(t *testing.T) {
	vocab := map[string]int32{"a": 0, "b": 1, "ab": 2}
	for _, tc := range []struct {
		name   string
		vocab  map[string]int32
		merges [][2]string
	}{
		{"merge token missing", vocab, [][2]string{{"a", "c"}}},
		{"merged token missing", map[string]int32{"a": 0, "b": 1}, [][2]string{{"a", "b"}}},
		{"negative id", map[string]int32{"a": -1}, nil},
		{"huge id", map[string]int32{"a": 1 << 30}, nil},
		{"invalid UTF-8", map[string]int32{"\xff": 0}, nil},
	} {
		if _, err := newBPE(tc.vocab, tc.merges, bpeOptions{}); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", tc.name, err)
		}
	}
}

// TestWordCache checks that cached words are returned and that a full
// shard is emptied.
func TestWordCache(t *testing.T) {
	c := newWordCache()
	w := []symbol{{id: 7, size: 2}}
	c.put("xy", w)
	if got, ok := c.get("xy"); !ok || !slices.Equal(got, w) {
		t.Fatalf("get = %v, %v", got, ok)
	}
	shard := shardOf("xy")
	added := 1
	for i := 0; added < cacheShardCap; i++ {
		if k := fmt.Sprint(i); shardOf(k) == shard {
			c.put(k, nil)
			added++
		}
	}
	if _, ok := c.get("xy"); !ok {
		t.Fatal("word lost before the shard was full")
	}
	for i := 0; ; i++ {
		if k := fmt.Sprint("more", i); shardOf(k) == shard {
			c.put(k, nil)
			break
		}
	}
	if _, ok := c.get("xy"); ok {
		t.Error("full shard was not emptied")
	}
}

// randomMergesBPE returns a BPE over the alphabet a, b, c with n random
// merges of tokens up to maxLen bytes long: many overlapping merges, to
// compare the merge algorithm with the textbook one.
func randomMergesBPE(t *testing.T, r *rand.Rand, n, maxLen int) *bpeModel {
	t.Helper()
	tokens := []string{"a", "b", "c"}
	var merges [][2]string
	seen := map[string]bool{"a": true, "b": true, "c": true}
	for len(merges) < n {
		x, y := tokens[r.IntN(len(tokens))], tokens[r.IntN(len(tokens))]
		if len(x)+len(y) > maxLen {
			continue
		}
		merges = append(merges, [2]string{x, y})
		if !seen[x+y] {
			seen[x+y] = true
			tokens = append(tokens, x+y)
		}
	}
	return newTestBPE(t, tokens, merges, bpeOptions{})
}
