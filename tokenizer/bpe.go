package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// token is one token produced for a piece: its id and its byte range in the
// piece's normalized text.
type token struct {
	id     int32
	lo, hi int32
}

// mergeInfo is what merging a pair gives: the merge's rank (its position in
// the merges list, lower merges first) and the id of the merged token.
type mergeInfo struct{ rank, id int32 }

// bpeModel is the BPE model of a tokenizer.json file.
type bpeModel struct {
	vocab  map[string]int32
	tokens []string // id -> token; "" where no token has the id
	has    []bool   // id -> whether the vocabulary has it
	merges map[uint64]mergeInfo
	// rankID is the id of the token each merge gives, by rank: the merge
	// queue keeps ranks only.
	rankID []int32

	unkToken     string // "" when the file has none
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int32 // ids of the "<0xXX>" tokens, -1 where absent

	cache *wordCache
}

// pairKey packs a pair of ids into a map key.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newBPE builds the model from a vocabulary and an ordered merges list.
func newBPE(vocab map[string]int32, merges [][2]string, cfg bpeOptions) (*bpeModel, error) {
	m := &bpeModel{
		vocab:        vocab,
		merges:       make(map[uint64]mergeInfo, len(merges)),
		unkToken:     cfg.unkToken,
		prefix:       cfg.prefix,
		suffix:       cfg.suffix,
		fuseUnk:      cfg.fuseUnk,
		byteFallback: cfg.byteFallback,
		ignoreMerges: cfg.ignoreMerges,
		cache:        newWordCache(),
	}
	maxID := int32(-1)
	for tok, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary token %q has negative id %d: %w", tok, id, api.ErrCorrupt)
		}
		if !utf8.ValidString(tok) {
			return nil, fmt.Errorf("vocabulary token %q is not valid UTF-8: %w", tok, api.ErrCorrupt)
		}
		maxID = max(maxID, id)
	}
	if int(maxID) >= maxSparseIDs(len(vocab)) {
		return nil, fmt.Errorf("vocabulary of %d tokens has id %d: %w", len(vocab), maxID, api.ErrCorrupt)
	}
	m.tokens = make([]string, maxID+1)
	m.has = make([]bool, maxID+1)
	for tok, id := range vocab {
		m.tokens[id] = tok
		m.has[id] = true
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	m.rankID = make([]int32, len(merges))
	for rank, mg := range merges {
		a, ok := vocab[mg[0]]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary: %w", rank, mg[0], mg[1], mg[0], api.ErrCorrupt)
		}
		b, ok := vocab[mg[1]]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary: %w", rank, mg[0], mg[1], mg[1], api.ErrCorrupt)
		}
		if len(mg[1]) < len(m.prefix) {
			return nil, fmt.Errorf("merge %d (%q %q) is shorter than the subword prefix %q: %w", rank, mg[0], mg[1], m.prefix, api.ErrCorrupt)
		}
		merged := mg[0] + mg[1][len(m.prefix):]
		id, ok := vocab[merged]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary: %w", rank, mg[0], mg[1], merged, api.ErrCorrupt)
		}
		// A repeated pair keeps its last rank, as in Hugging Face's map.
		m.merges[pairKey(a, b)] = mergeInfo{rank: int32(rank), id: id}
		m.rankID[rank] = id
	}
	return m, nil
}

// maxSparseIDs bounds the ids a vocabulary of n tokens may use, so that a
// malformed file cannot make the loader allocate without limit.
func maxSparseIDs(n int) int { return 4*n + 1<<20 }

// bpeOptions are the settings of a BPE model besides vocabulary and merges.
type bpeOptions struct {
	unkToken, prefix, suffix            string
	fuseUnk, byteFallback, ignoreMerges bool
}

// symbol is one element of a word being merged: a token id, its length in
// bytes of the piece, and its neighbours (-1 at the ends). A symbol merged
// into its left neighbour has length 0.
type symbol struct {
	id, prev, next, size int32
}

// tokenize appends the tokens of one piece (its normalized text) to dst.
func (m *bpeModel) tokenize(piece string, dst []token) ([]token, error) {
	if piece == "" {
		return dst, nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[piece]; ok {
			return append(dst, token{id: id, lo: 0, hi: int32(len(piece))}), nil
		}
	}
	if len(piece) >= maxCachedWord {
		// Long pieces are merged without the cache, and the tokens are
		// read straight from the merged symbols.
		syms, err := m.mergeSymbols(piece)
		if err != nil {
			return dst, err
		}
		return appendWord(slices.Grow(dst, liveSymbols(syms)), syms), nil
	}
	if word, ok := m.cache.get(piece); ok {
		return appendWord(dst, word), nil
	}
	word, err := m.mergeWord(piece)
	if err != nil {
		return dst, err
	}
	// The piece may share memory with the whole text: keep a copy.
	m.cache.put(strings.Clone(piece), word)
	return appendWord(dst, word), nil
}

// tokenizeIDs appends the token ids of one piece to dst: tokenize without
// the offsets.
func (m *bpeModel) tokenizeIDs(piece string, dst []int) ([]int, error) {
	if piece == "" {
		return dst, nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[piece]; ok {
			return append(dst, int(id)), nil
		}
	}
	var word []symbol
	if len(piece) >= maxCachedWord {
		syms, err := m.mergeSymbols(piece)
		if err != nil {
			return dst, err
		}
		dst = slices.Grow(dst, liveSymbols(syms))
		word = syms
	} else if w, ok := m.cache.get(piece); ok {
		word = w
	} else {
		w, err := m.mergeWord(piece)
		if err != nil {
			return dst, err
		}
		m.cache.put(strings.Clone(piece), w)
		word = w
	}
	for _, s := range word {
		if s.size != 0 {
			dst = append(dst, int(s.id))
		}
	}
	return dst, nil
}

// liveSymbols counts the symbols that were not merged away.
func liveSymbols(syms []symbol) int {
	n := 0
	for _, s := range syms {
		if s.size != 0 {
			n++
		}
	}
	return n
}

// appendWord appends the tokens of merged symbols, with their offsets;
// symbols of size 0 (merged into their left neighbour) are skipped.
func appendWord(dst []token, word []symbol) []token {
	pos := int32(0)
	for _, s := range word {
		if s.size == 0 {
			continue
		}
		dst = append(dst, token{id: s.id, lo: pos, hi: pos + s.size})
		pos += s.size
	}
	return dst
}

// mergeWord returns the symbols of a piece once merged (see mergeSymbols),
// without the merged-away ones.
func (m *bpeModel) mergeWord(w string) ([]symbol, error) {
	syms, err := m.mergeSymbols(w)
	if err != nil {
		return nil, err
	}
	out := syms[:0]
	for _, s := range syms {
		if s.size != 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// mergeSymbols splits a piece into characters (with the subword prefix and
// suffix, byte fallback and unknown token as configured) and applies the
// merges, lowest rank first and leftmost first among equal ranks. It
// returns all the symbols, those merged into their left neighbour having
// size 0.
func (m *bpeModel) mergeSymbols(w string) ([]symbol, error) {
	syms := make([]symbol, 0, utf8.RuneCountInString(w))
	add := func(id int32, size int) {
		n := int32(len(syms))
		if n > 0 {
			syms[n-1].next = n
		}
		syms = append(syms, symbol{id: id, prev: n - 1, next: -1, size: int32(size)})
	}
	unkID, unkSize := int32(-1), 0
	var buf []byte
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+size]
		if i > 0 && m.prefix != "" {
			s = m.prefix + s
		}
		if i+size == len(w) && m.suffix != "" {
			s += m.suffix
		}
		i += size
		if id, ok := m.vocab[s]; ok {
			if unkID >= 0 {
				add(unkID, unkSize)
				unkID = -1
			}
			add(id, size)
			continue
		}
		if m.byteFallback && m.allBytesKnown(s) {
			buf = append(buf[:0], s...)
			for _, b := range buf {
				add(m.byteIDs[b], 1)
			}
			continue
		}
		if m.unkToken == "" {
			continue // Hugging Face drops the character.
		}
		id, ok := m.vocab[m.unkToken]
		if !ok {
			return nil, fmt.Errorf("unknown token %q is not in the vocabulary: %w", m.unkToken, api.ErrCorrupt)
		}
		switch {
		case unkID >= 0 && m.fuseUnk:
			unkSize += size
		case unkID >= 0:
			add(unkID, unkSize)
			unkID, unkSize = id, size
		default:
			unkID, unkSize = id, size
		}
	}
	if unkID >= 0 {
		add(unkID, unkSize)
	}
	m.mergeAll(syms)
	return syms, nil
}

// allBytesKnown reports whether every byte of s has a "<0xXX>" token.
func (m *bpeModel) allBytesKnown(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

// mergeAll applies the merges to syms in place: merged-away symbols get
// size 0. This is Hugging Face's algorithm: a priority queue of candidate
// merges ordered by rank then position, where entries made stale by an
// earlier merge are skipped. (An entry is stale when the pair at its
// position no longer gives the entry's token; a pair once changed never
// gives that token again, since the text it covers only grows.)
func (m *bpeModel) mergeAll(syms []symbol) {
	if len(syms) < 2 {
		return
	}
	// The initial candidates fill the queue in one allocation, and the
	// heap is built in linear time.
	q := make(mergeQueue, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		if mi, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q = append(q, newCandidate(mi.rank, int32(i)))
		}
	}
	q.init()
	for len(q) > 0 {
		rank, pos := q.pop().split()
		cur := &syms[pos]
		if cur.size == 0 || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		mi, ok := m.merges[pairKey(cur.id, right.id)]
		if !ok || mi.id != m.rankID[rank] {
			continue
		}
		cur.id = mi.id
		cur.size += right.size
		syms[cur.next].size = 0
		cur.next = right.next
		if cur.next >= 0 {
			syms[cur.next].prev = pos
		}
		if cur.prev >= 0 {
			if mi, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				q.push(newCandidate(mi.rank, cur.prev))
			}
		}
		if cur.next >= 0 {
			if mi, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				q.push(newCandidate(mi.rank, pos))
			}
		}
	}
}

// candidate is a possible merge of the symbol at a position with its right
// neighbour: the merge's rank in the high 32 bits and the position in the
// low 32, so that candidates order as integers by rank, then position.
type candidate uint64

func newCandidate(rank, pos int32) candidate {
	return candidate(uint64(uint32(rank))<<32 | uint64(uint32(pos)))
}

// split returns the rank and the position of a candidate.
func (c candidate) split() (rank, pos int32) { return int32(c >> 32), int32(uint32(c)) }

// mergeQueue is a binary min-heap of candidates.
type mergeQueue []candidate

// init orders an unordered slice into a heap.
func (q mergeQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

// down moves the element at i down to its place.
func (q mergeQueue) down(i int) {
	n := len(q)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		small := l
		if r := l + 1; r < n && q[r] < q[l] {
			small = r
		}
		if q[small] >= q[i] {
			return
		}
		q[i], q[small] = q[small], q[i]
		i = small
	}
}

func (q *mergeQueue) push(c candidate) {
	h := append(*q, c)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[i] >= h[p] {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	*q = h
}

func (q *mergeQueue) pop() candidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	h.down(0)
	*q = h
	return top
}

// Word cache limits: pieces of maxCachedWord bytes or more are not cached,
// and each shard holds about cacheShardCap words at most.
const (
	maxCachedWord = 256
	cacheShards   = 64
	cacheShardCap = 1024
)

// wordCache remembers the merged symbols of recent pieces. It is safe for
// concurrent use: reads of words already cached take no lock (sync.Map),
// so that EncodeBatch's goroutines do not contend. A full shard is emptied
// before it takes new words.
type wordCache struct {
	shards [cacheShards]cacheShard
}

// cacheShard is one shard, padded to keep shards on separate cache lines.
type cacheShard struct {
	m sync.Map // string -> []symbol
	n atomic.Int64
	_ [64]byte
}

func newWordCache() *wordCache { return &wordCache{} }

// shardOf picks the shard of a word by an FNV-1a hash of its bytes.
func shardOf(w string) int {
	h := uint32(2166136261)
	for i := 0; i < len(w); i++ {
		h = (h ^ uint32(w[i])) * 16777619
	}
	return int(h % cacheShards)
}

func (c *wordCache) get(w string) ([]symbol, bool) {
	v, ok := c.shards[shardOf(w)].m.Load(w)
	if !ok {
		return nil, false
	}
	return v.([]symbol), true
}

func (c *wordCache) put(w string, word []symbol) {
	s := &c.shards[shardOf(w)]
	if s.n.Add(1) > cacheShardCap {
		s.m.Clear()
		s.n.Store(1)
	}
	s.m.Store(w, word)
}
