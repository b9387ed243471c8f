package tokenizer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/densessm/densessm/api"
)

// TrainConfig configures a byte-level BPE trainer. The initial alphabet is
// always the 256 byte characters.
type TrainConfig struct {
	// VocabSize is the size of the vocabulary to learn, special tokens and
	// the 256 byte characters included.
	VocabSize int
	// MinFrequency: a pair seen fewer times than this is never merged.
	MinFrequency int
	// SpecialTokens are added first, with ids 0, 1, ... They must be
	// distinct and not empty.
	SpecialTokens []string
	// Progress, if set, is called from Train with the number of merges
	// learned so far and the number wanted (VocabSize less the initial
	// vocabulary: the special tokens and the 256 byte characters), at
	// most about ten times a second, and once at the end: then done is the
	// number learned, less than total when the pairs run out first. It
	// runs on Train's goroutine, which holds the trainer: it must not call
	// the trainer's methods.
	Progress func(done, total int)
}

// Trainer learns a byte-level BPE tokenizer (GPT-2 style: the GPT-2 split
// pattern, no prefix space) from text, with Hugging Face's BpeTrainer
// algorithm, so that both learn the same vocabulary and merges from the
// same texts. Feed it texts, then call Train.
type Trainer struct {
	cfg   TrainConfig
	mu    sync.Mutex
	words map[string]int64 // byte-level word -> count
}

// NewTrainer returns a trainer for cfg. An invalid configuration (a
// vocabulary too small for the special tokens and the 256 byte characters,
// a negative minimum frequency, an empty or repeated special token) gives
// an error wrapping api.ErrConfig.
func NewTrainer(cfg TrainConfig) (*Trainer, error) {
	if cfg.MinFrequency < 0 {
		return nil, fmt.Errorf("train: minimum frequency %d: %w", cfg.MinFrequency, api.ErrConfig)
	}
	seen := make(map[string]int, len(cfg.SpecialTokens))
	for i, s := range cfg.SpecialTokens {
		if s == "" {
			return nil, fmt.Errorf("train: special token %d is empty: %w", i, api.ErrConfig)
		}
		if j, dup := seen[s]; dup {
			return nil, fmt.Errorf("train: special token %q is given twice (%d and %d): %w", s, j, i, api.ErrConfig)
		}
		seen[s] = i
	}
	if least := len(cfg.SpecialTokens) + len(byteChars); cfg.VocabSize < least {
		return nil, fmt.Errorf("train: vocabulary size %d is less than the %d special tokens and %d byte characters: %w",
			cfg.VocabSize, len(cfg.SpecialTokens), len(byteChars), api.ErrConfig)
	}
	return &Trainer{cfg: cfg, words: make(map[string]int64)}, nil
}

// Feed counts the words of texts (each text is one sequence, split like the
// ByteLevel pre-tokenizer splits it), in parallel over the available cores.
// It may be called any number of times, from several goroutines.
func (tr *Trainer) Feed(texts []string) {
	_ = tr.FeedContext(context.Background(), texts) // fails only when cancelled
}

// feedCheck is how many bytes of text Feed splits between checks of its
// context.
const feedCheck = 1 << 16

// FeedContext is Feed, stopped when ctx is done: it then returns an error
// wrapping ctx.Err() and counts none of the texts.
func (tr *Trainer) FeedContext(ctx context.Context, texts []string) error {
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	counts := make([]map[string]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := make(map[string]int64)
			next := 0 // bytes split before the next check
			for i := w; i < len(texts); i += workers {
				s := texts[i]
				for j := 0; j < len(s); {
					if j >= next {
						if ctx.Err() != nil {
							return
						}
						next = j + feedCheck
					}
					k := gpt2Next(s, j)
					m[byteLevelString(s[j:k])]++
					j = k
				}
				next -= len(s)
			}
			counts[w] = m
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("train: counting words: %w", err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, m := range counts {
		for w, c := range m {
			tr.words[w] += c
		}
	}
	return nil
}

// trainWord is a word being merged: its symbols and how often it occurs.
type trainWord struct {
	syms  []int32
	count int64
}

// pairChange is a change in the count of a pair in one word.
type pairChange struct {
	pair  uint64
	delta int64
	word  int32
}

// trainEntry is a queue entry: a pair, its count when queued, and the words
// it was queued for.
type trainEntry struct {
	pair  uint64
	count int64
	pos   []int32
}

// trainQueue is a max-heap of entries by count, then by smallest pair.
type trainQueue []*trainEntry

func (q trainQueue) before(i, j int) bool {
	if q[i].count != q[j].count {
		return q[i].count > q[j].count
	}
	return q[i].pair < q[j].pair
}

func (q *trainQueue) push(e *trainEntry) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.before(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *trainQueue) pop() *trainEntry {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, best := 2*i+1, 2*i+2, i
		if l < len(h) && h.before(l, best) {
			best = l
		}
		if r < len(h) && h.before(r, best) {
			best = r
		}
		if best == i {
			break
		}
		h[i], h[best] = h[best], h[i]
		i = best
	}
	*q = h
	return top
}

// Train learns the merges from the words fed so far and returns the
// tokenizer.json of the result.
func (tr *Trainer) Train() ([]byte, error) {
	return tr.TrainContext(context.Background())
}

// trainCheck is how many words Train prepares between checks of its
// context.
const trainCheck = 4096

// progressEvery is the least time between two calls of the progress
// function.
const progressEvery = 100 * time.Millisecond

// TrainContext is Train, stopped when ctx is done: it then returns an
// error wrapping ctx.Err(). The context is checked between merges and
// every few thousand words while preparing them, so that cancellation
// takes effect within a small fraction of a second. The words fed are
// kept: Train may be called again.
func (tr *Trainer) TrainContext(ctx context.Context) ([]byte, error) {
	cancelled := func(what string) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("train: %s: %w", what, err)
		}
		return nil
	}
	if err := cancelled("start"); err != nil {
		return nil, err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	// 1. Special tokens, then the alphabet (every byte character) sorted by
	// code point.
	var vocab []string
	ids := make(map[string]int32)
	addToken := func(s string) int32 {
		if id, ok := ids[s]; ok {
			return id
		}
		ids[s] = int32(len(vocab))
		vocab = append(vocab, s)
		return ids[s]
	}
	for _, s := range tr.cfg.SpecialTokens {
		addToken(s)
	}
	alphabet := make([]rune, 0, 256)
	for _, r := range byteChars {
		alphabet = append(alphabet, r)
	}
	sort.Slice(alphabet, func(i, j int) bool { return alphabet[i] < alphabet[j] })
	for _, r := range alphabet {
		addToken(string(r))
	}
	total := max(0, tr.cfg.VocabSize-len(vocab))
	// 2. Words as symbol sequences.
	byChar := make(map[rune]int32, len(alphabet))
	for _, r := range alphabet {
		byChar[r] = ids[string(r)]
	}
	words := make([]trainWord, 0, len(tr.words))
	for w, c := range tr.words {
		if len(words)%trainCheck == 0 {
			if err := cancelled("preparing words"); err != nil {
				return nil, err
			}
		}
		syms := make([]int32, 0, len(w)/2)
		for _, r := range w {
			syms = append(syms, byChar[r])
		}
		words = append(words, trainWord{syms: syms, count: c})
	}
	// Word order only matters for how the work is split: fix it anyway.
	slices.SortFunc(words, func(a, b trainWord) int { return slices.Compare(a.syms, b.syms) })
	if err := cancelled("sorting words"); err != nil {
		return nil, err
	}
	// 3. Count pairs and where they occur.
	counts, where := countPairs(ctx, words)
	if err := cancelled("counting pairs"); err != nil {
		return nil, err
	}
	var q trainQueue
	for _, p := range sortedPairs(where) {
		if c := counts[p]; c > 0 {
			q.push(&trainEntry{pair: p, count: c, pos: where[p]})
		}
	}
	// 4. Merge the best pair until the vocabulary is full.
	var merges [][2]int32
	lastReport := time.Now()
	for len(vocab) < tr.cfg.VocabSize && len(q) > 0 {
		if err := cancelled("merging"); err != nil {
			return nil, err
		}
		if tr.cfg.Progress != nil && time.Since(lastReport) >= progressEvery {
			tr.cfg.Progress(len(merges), total)
			lastReport = time.Now()
		}
		top := q.pop()
		if cur := counts[top.pair]; top.count != cur {
			top.count = cur
			q.push(top)
			continue
		}
		if top.count < 1 || int64(tr.cfg.MinFrequency) > top.count {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		id := addToken(vocab[a] + vocab[b])
		merges = append(merges, [2]int32{a, b})
		changes := mergeWords(words, top.pos, a, b, id)
		added := make(map[uint64][]int32)
		for _, ch := range changes {
			counts[ch.pair] += ch.delta * words[ch.word].count
			if ch.delta > 0 {
				l := added[ch.pair]
				if len(l) == 0 || l[len(l)-1] != ch.word {
					added[ch.pair] = append(l, ch.word)
				}
			}
		}
		for _, p := range sortedPairs(added) {
			if c := counts[p]; c > 0 {
				q.push(&trainEntry{pair: p, count: c, pos: added[p]})
			}
		}
	}
	if tr.cfg.Progress != nil {
		tr.cfg.Progress(len(merges), total)
	}
	return tr.marshal(vocab, merges)
}

// sortedPairs returns the keys of m in increasing order, so that the queue
// is built the same way on every run.
func sortedPairs[V any](m map[uint64]V) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// countPairs counts the adjacent pairs of all words, weighted by word
// count, and lists the words each pair occurs in; the work is split over
// the cores. It stops early, with partial results, when ctx is done.
func countPairs(ctx context.Context, words []trainWord) (map[uint64]int64, map[uint64][]int32) {
	workers := max(1, min(runtime.GOMAXPROCS(0), len(words)/1024))
	type result struct {
		counts map[uint64]int64
		where  map[uint64][]int32
	}
	results := make([]result, workers)
	var wg sync.WaitGroup
	chunk := (len(words) + workers - 1) / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{make(map[uint64]int64), make(map[uint64][]int32)}
			for i := w * chunk; i < min(len(words), (w+1)*chunk); i++ {
				if i%trainCheck == 0 && ctx.Err() != nil {
					break
				}
				syms := words[i].syms
				for k := 0; k+1 < len(syms); k++ {
					p := pairKey(syms[k], syms[k+1])
					r.counts[p] += words[i].count
					if l := r.where[p]; len(l) == 0 || l[len(l)-1] != int32(i) {
						r.where[p] = append(l, int32(i))
					}
				}
			}
			results[w] = r
		}()
	}
	wg.Wait()
	counts, where := results[0].counts, results[0].where
	for _, r := range results[1:] {
		for p, c := range r.counts {
			counts[p] += c
		}
		for p, l := range r.where {
			where[p] = append(where[p], l...)
		}
	}
	return counts, where
}

// mergeWords merges the pair (a, b) into id in the listed words and returns
// the changes in pair counts (per occurrence, not yet weighted by word
// count). Large lists are split over the cores.
func mergeWords(words []trainWord, pos []int32, a, b, id int32) []pairChange {
	workers := max(1, min(runtime.GOMAXPROCS(0), len(pos)/2048))
	if workers == 1 {
		var out []pairChange
		for _, w := range pos {
			out = mergeWord(&words[w], w, a, b, id, out)
		}
		return out
	}
	parts := make([][]pairChange, workers)
	chunk := (len(pos) + workers - 1) / workers
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, w := range pos[k*chunk : min(len(pos), (k+1)*chunk)] {
				parts[k] = mergeWord(&words[w], w, a, b, id, parts[k])
			}
		}()
	}
	wg.Wait()
	var out []pairChange
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// mergeWord replaces, left to right, each occurrence of (a, b) in the word
// by id and appends the resulting pair changes (Hugging Face's Word::merge).
func mergeWord(w *trainWord, wi int32, a, b, id int32, out []pairChange) []pairChange {
	s := w.syms
	for i := 0; i+1 < len(s); i++ {
		if s[i] != a || s[i+1] != b {
			continue
		}
		if i > 0 {
			out = append(out, pairChange{pairKey(s[i-1], a), -1, wi}, pairChange{pairKey(s[i-1], id), 1, wi})
		}
		s[i] = id
		s = append(s[:i+1], s[i+2:]...)
		if i+1 < len(s) {
			out = append(out, pairChange{pairKey(b, s[i+1]), -1, wi}, pairChange{pairKey(id, s[i+1]), 1, wi})
		}
	}
	w.syms = s
	return out
}

// marshal writes the tokenizer.json of a trained model, in the layout
// Hugging Face writes: vocabulary in id order, merges as pairs (a pair
// merged twice keeps its last rank).
func (tr *Trainer) marshal(vocab []string, merges [][2]int32) ([]byte, error) {
	last := make(map[[2]int32]int, len(merges))
	for i, m := range merges {
		last[m] = i
	}
	var buf bytes.Buffer
	str := func(s string) {
		b, _ := json.Marshal(s)
		buf.Write(b)
	}
	buf.WriteString(`{"version":"1.0","truncation":null,"padding":null,"added_tokens":[`)
	for i, s := range tr.cfg.SpecialTokens {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":%d,"content":`, i)
		str(s)
		buf.WriteString(`,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}`)
	}
	buf.WriteString(`],"normalizer":null,` +
		`"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},` +
		`"post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},` +
		`"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},` +
		`"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,` +
		`"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{`)
	for i, s := range vocab {
		if i > 0 {
			buf.WriteByte(',')
		}
		str(s)
		fmt.Fprintf(&buf, ":%d", i)
	}
	buf.WriteString(`},"merges":[`)
	first := true
	for i, m := range merges {
		if last[m] != i {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.WriteByte('[')
		str(vocab[m[0]])
		buf.WriteByte(',')
		str(vocab[m[1]])
		buf.WriteByte(']')
	}
	buf.WriteString(`]}}`)
	return buf.Bytes(), nil
}
