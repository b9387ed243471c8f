package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/densessm/densessm/api"
)

// seedStream is the second word of every Sampler's PCG state; the first is
// Options.Seed.
const seedStream = 0x6e5e_7a1e_d0c0_de5d

// Sampler picks the next token of one sequence from the model's logits. It
// keeps the sequence's history (for the repetition penalty) and its own
// random generator, a math/rand/v2 PCG seeded with (Options.Seed, a fixed
// constant), so that the same seed and the same logits give the same tokens.
// Sample allocates nothing (Observe only grows the history of distinct
// tokens, amortised); a Sampler is not safe for concurrent use.
//
// The rules follow Hugging Face transformers' logits processors, in the
// order generate applies them, each on the output of the one before:
//
//  1. Repetition penalty (RepetitionPenaltyLogitsProcessor): the logit of
//     every distinct token of the history (prompt and output so far) is
//     divided by the penalty when >= 0, multiplied when < 0, once per token.
//  2. Temperature (TemperatureLogitsWarper): logits divided by t. Here the
//     largest logit is subtracted first, which changes no probability but
//     keeps a tiny t from overflowing to Inf.
//  3. Top-k (TopKLogitsWarper): keep k tokens. Hugging Face keeps every
//     token whose logit equals the k-th largest; here exactly k are kept,
//     the lower ids first among equal logits.
//  4. Top-p (TopPLogitsWarper): over the probabilities of the tokens left,
//     sorted in increasing order, drop those whose cumulative sum is <= 1-p,
//     never the most likely one: what is kept is the smallest set of most
//     likely tokens whose probability reaches p. Among equal logits the
//     higher id is dropped first (torch.sort leaves that order unspecified).
//  5. Min-p (MinPLogitsWarper): drop the tokens whose probability is below
//     min_p times the largest one; the most likely token always stays.
//
// Then a token is drawn from the softmax of what is left. Temperature 0 or
// TopK 1 is greedy decoding: the token with the largest logit after the
// repetition penalty (as do_sample=False applies it), the lowest id among
// equal logits, without drawing a number. Arithmetic is float64 where Hugging
// Face uses the logits' float32, so results may differ at exact boundaries.
//
// A NaN or +Inf logit is an error; -Inf logits are tokens of probability 0,
// and logits that are all -Inf are an error.
type Sampler struct {
	o     Options
	vocab int
	pcg   *rand.PCG
	rng   *rand.Rand
	seen  []bool  // seen[id]: id is in the history (only with a penalty)
	hist  []int32 // the distinct ids of the history
	s     *scratch
}

// scratch holds the per-token work buffers, which the samplers of a batch
// share since they run one after the other.
type scratch struct {
	x    []float64 // logits after the penalty
	w    []float64 // weights exp((x - max)/t) of the candidates, by id
	cand []int32   // the candidate ids
}

func newScratch(vocab int) *scratch {
	return &scratch{x: make([]float64, vocab), w: make([]float64, vocab), cand: make([]int32, 0, vocab)}
}

// NewSampler returns a Sampler for a model with vocab logits per token. It
// validates o, and checks its EOS ids against vocab (an error wrapping
// api.ErrOutOfRange).
func NewSampler(o Options, vocab int) (*Sampler, error) {
	return newSampler(o, vocab, nil)
}

// newSampler is NewSampler with shared scratch buffers (nil: its own).
func newSampler(o Options, vocab int, s *scratch) (*Sampler, error) {
	if vocab <= 0 {
		return nil, fmt.Errorf("sampler: vocabulary of %d tokens: want at least one: %w", vocab, api.ErrConfig)
	}
	if err := o.checkVocab(vocab); err != nil {
		return nil, err
	}
	if s == nil {
		s = newScratch(vocab)
	}
	pcg := rand.NewPCG(o.Seed, seedStream)
	sm := &Sampler{o: o, vocab: vocab, pcg: pcg, rng: rand.New(pcg), s: s}
	if o.RepetitionPenalty != 1 {
		sm.seen = make([]bool, vocab)
		sm.hist = make([]int32, 0, min(vocab, 1024))
	}
	return sm, nil
}

// Reset forgets the history and reseeds the generator, so that the Sampler
// starts a new sequence as a new Sampler would.
func (s *Sampler) Reset() {
	for _, id := range s.hist {
		s.seen[id] = false
	}
	s.hist = s.hist[:0]
	s.pcg.Seed(s.o.Seed, seedStream)
}

// Observe adds ids to the history the repetition penalty looks at: the
// prompt before the first Sample, and each token that goes into the
// sequence (Generate observes what it samples). An id outside the
// vocabulary is an error wrapping api.ErrOutOfRange, and nothing after it
// is observed.
func (s *Sampler) Observe(ids ...int32) error {
	for i, id := range ids {
		if id < 0 || int(id) >= s.vocab {
			return fmt.Errorf("sampler: id %d at position %d: the vocabulary has %d tokens: %w", id, i, s.vocab, api.ErrOutOfRange)
		}
		if s.seen != nil && !s.seen[id] {
			s.seen[id] = true
			s.hist = append(s.hist, id)
		}
	}
	return nil
}

// Sample returns the next token for logits (one row, vocab values). It does
// not add the token to the history: call Observe when it is kept.
func (s *Sampler) Sample(logits []float32) (_ int32, err error) {
	defer api.Recover(&err)
	g, err := s.prepare(logits)
	if err != nil || g >= 0 {
		return g, err
	}
	w, cand := s.s.w, s.s.cand
	var z float64
	for _, id := range cand {
		z += w[id]
	}
	u := s.rng.Float64() * z
	for _, id := range cand {
		if u -= w[id]; u < 0 {
			return id, nil
		}
	}
	return cand[len(cand)-1], nil // u reached z by rounding
}

// Probs returns the distribution Sample draws from for logits: the
// probability of each token id after every rule (1 on the greedy token
// when decoding is greedy), in dst when it is large enough. It draws no
// number and changes nothing; it is for showing and testing the rules.
func (s *Sampler) Probs(logits []float32, dst []float64) (_ []float64, err error) {
	defer api.Recover(&err)
	g, err := s.prepare(logits)
	if err != nil {
		return nil, err
	}
	if cap(dst) < s.vocab {
		dst = make([]float64, s.vocab)
	}
	dst = dst[:s.vocab]
	clear(dst)
	if g >= 0 {
		dst[g] = 1
		return dst, nil
	}
	w, cand := s.s.w, s.s.cand
	var z float64
	for _, id := range cand {
		z += w[id]
	}
	for _, id := range cand {
		dst[id] = w[id] / z
	}
	return dst, nil
}

// prepare applies the rules to logits. In greedy mode it returns the token;
// otherwise it returns -1 with the kept tokens in s.s.cand and their
// unnormalised weights in s.s.w.
func (s *Sampler) prepare(logits []float32) (int32, error) {
	if len(logits) != s.vocab {
		return -1, fmt.Errorf("sampler: %d logits for a vocabulary of %d tokens: %w", len(logits), s.vocab, api.ErrShape)
	}
	x := s.s.x
	for i, v := range logits {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 1) {
			return -1, fmt.Errorf("sampler: the logit of token %d is %v: %w", i, f, api.ErrOutOfRange)
		}
		x[i] = f
	}
	if p := s.o.RepetitionPenalty; p != 1 {
		for _, id := range s.hist {
			if x[id] < 0 {
				x[id] *= p
			} else {
				x[id] /= p
			}
		}
	}
	best := 0
	for i := 1; i < len(x); i++ {
		if x[i] > x[best] {
			best = i
		}
	}
	if math.IsInf(x[best], -1) {
		return -1, fmt.Errorf("sampler: every logit is -Inf: %w", api.ErrOutOfRange)
	}
	if s.o.greedy() {
		return int32(best), nil
	}
	s.filter(x[best])
	return -1, nil
}

// filter runs temperature, top-k, top-p and min-p on s.s.x, whose largest
// value is xmax, leaving the kept ids and their weights in s.s.
func (s *Sampler) filter(xmax float64) {
	x, w := s.s.x, s.s.w
	cand := s.s.cand[:0]
	sorted := false
	if k := s.o.TopK; k > 0 && k < len(x) {
		cand = topK(x, cand[:k])
		sorted = true
	} else {
		for i, v := range x {
			if !math.IsInf(v, -1) {
				cand = append(cand, int32(i))
			}
		}
	}
	// Weights relative to the most likely token, which gets exactly 1.
	n, z := 0, 0.0
	for _, id := range cand {
		if v := math.Exp((x[id] - xmax) / s.o.Temperature); v > 0 {
			w[id] = v
			z += v
			cand[n] = id
			n++
		}
	}
	cand = cand[:n]
	if p := s.o.TopP; p < 1 {
		var dropped float64
		if !sorted {
			// Tokens of probability <= (1-p)/(2n) weigh at most (1-p)/2 all
			// together and come first in increasing order, so top-p drops
			// them all: leave them out of the sort.
			thr := (1 - p) * z / (2 * float64(len(cand)))
			m := 0
			for _, id := range cand {
				if w[id] <= thr {
					dropped += w[id]
				} else {
					cand[m] = id
					m++
				}
			}
			cand = cand[:m]
			sortBest(x, cand)
		}
		cum, limit := dropped/z, 1-p
		end := len(cand)
		for end > 1 {
			if cum += w[cand[end-1]] / z; cum > limit {
				break
			}
			end--
		}
		cand = cand[:end]
	}
	if mp := s.o.MinP; mp > 0 {
		// probability / largest probability = weight / 1.
		m := 0
		for _, id := range cand {
			if w[id] >= mp {
				cand[m] = id
				m++
			}
		}
		cand = cand[:m]
	}
	s.s.cand = cand
}

// better reports whether token a ranks before token b: a larger logit, or
// the same logit and a lower id.
func better(x []float64, a, b int32) bool {
	return x[a] > x[b] || (x[a] == x[b] && a < b)
}

// sortBest sorts ids best first.
func sortBest(x []float64, ids []int32) {
	slices.SortFunc(ids, func(a, b int32) int {
		switch {
		case better(x, a, b):
			return -1
		case better(x, b, a):
			return 1
		}
		return 0
	})
}

// topK fills h (of length k < len(x)) with the k best ids of x, best first,
// through a heap whose root is the worst id kept so far.
func topK(x []float64, h []int32) []int32 {
	for i := range h {
		h[i] = int32(i)
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(x, h, i)
	}
	for id := len(h); id < len(x); id++ {
		if better(x, int32(id), h[0]) {
			h[0] = int32(id)
			siftDown(x, h, 0)
		}
	}
	sortBest(x, h)
	return h
}

// siftDown moves h[i] down until no child of it is worse.
func siftDown(x []float64, h []int32, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && better(x, h[c], h[r]) {
			c = r // the worse child
		}
		if !better(x, h[i], h[c]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
