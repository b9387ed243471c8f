package generate

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// probTol is the tolerance on probabilities computed two ways in float64.
const probTol = 1e-12

// logsOf returns the logits ln(p) of a distribution p.
func logsOf(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(math.Log(v))
	}
	return out
}

// softmax64 returns the softmax of x in float64.
func softmax64(x []float64) []float64 {
	m := slices.Max(x)
	out := make([]float64, len(x))
	var z float64
	for i, v := range x {
		out[i] = math.Exp(v - m)
		z += out[i]
	}
	for i := range out {
		out[i] /= z
	}
	return out
}

// keep returns the softmax of the float32 logits restricted to the ids in
// kept (the others get 0), divided by temperature t.
func keep(logits []float32, t float64, kept ...int) []float64 {
	x := make([]float64, len(kept))
	for i, id := range kept {
		x[i] = float64(logits[id]) / t
	}
	p := softmax64(x)
	out := make([]float64, len(logits))
	for i, id := range kept {
		out[id] = p[i]
	}
	return out
}

func opts(mod func(*Options)) Options {
	o := DefaultOptions()
	o.Temperature = 1
	if mod != nil {
		mod(&o)
	}
	return o
}

func probs(t *testing.T, o Options, logits []float32, hist ...int32) []float64 {
	t.Helper()
	s, err := NewSampler(o, len(logits))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Observe(hist...); err != nil {
		t.Fatal(err)
	}
	p, err := s.Probs(logits, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkProbs(t *testing.T, name string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d probabilities, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > probTol || (want[i] == 0) != (got[i] == 0) {
			t.Fatalf("%s: probabilities %v, want %v (tolerance %g, zeros exact)", name, got, want, probTol)
		}
	}
}

// TestSamplerRules checks each rule, and their order, on hand-made logits
// against distributions computed by hand.
func TestSamplerRules(t *testing.T) {
	l4 := logsOf(0.5, 0.25, 0.15, 0.1)
	cases := []struct {
		name   string
		o      Options
		logits []float32
		hist   []int32
		want   []float64
	}{
		{"plain softmax", opts(nil), l4, nil, keep(l4, 1, 0, 1, 2, 3)},
		{"temperature 2 halves the logits", opts(func(o *Options) { o.Temperature = 2 }),
			[]float32{1, 2, 3}, nil, softmax64([]float64{0.5, 1, 1.5})},
		{"temperature 0.5 doubles them", opts(func(o *Options) { o.Temperature = 0.5 }),
			[]float32{1, 2, 3}, nil, softmax64([]float64{2, 4, 6})},
		{"repetition penalty divides positive, multiplies negative logits",
			opts(func(o *Options) { o.RepetitionPenalty = 2 }),
			[]float32{2, -2, 1, 0}, []int32{0, 1, 0, 3}, softmax64([]float64{1, -4, 1, 0})},
		{"repetition penalty below 1 rewards",
			opts(func(o *Options) { o.RepetitionPenalty = 0.5 }),
			[]float32{2, -2, 1, 0}, []int32{0, 1}, softmax64([]float64{4, -1, 1, 0})},
		{"top-k 2", opts(func(o *Options) { o.TopK = 2 }),
			[]float32{1, 3, 2, 0}, nil, keep([]float32{1, 3, 2, 0}, 1, 1, 2)},
		{"top-k 2 with a tie keeps the lower id", opts(func(o *Options) { o.TopK = 2 }),
			[]float32{1, 3, 2, 2}, nil, keep([]float32{1, 3, 2, 2}, 1, 1, 2)},
		{"top-k larger than the vocabulary is off", opts(func(o *Options) { o.TopK = 9 }),
			l4, nil, keep(l4, 1, 0, 1, 2, 3)},
		// Sorted up: 0.1, 0.15, 0.25, 0.5, cumulative 0.1, 0.25, 0.5, 1.
		{"top-p 0.74 drops what sums to <= 0.26", opts(func(o *Options) { o.TopP = 0.74 }),
			l4, nil, keep(l4, 1, 0, 1)},
		{"top-p 0.76 drops what sums to <= 0.24", opts(func(o *Options) { o.TopP = 0.76 }),
			l4, nil, keep(l4, 1, 0, 1, 2)},
		{"top-p 0.91 keeps all", opts(func(o *Options) { o.TopP = 0.91 }),
			l4, nil, keep(l4, 1, 0, 1, 2, 3)},
		{"top-p 0.49 keeps the most likely", opts(func(o *Options) { o.TopP = 0.49 }),
			l4, nil, keep(l4, 1, 0)},
		{"top-p tiny keeps at least one", opts(func(o *Options) { o.TopP = 1e-9 }),
			l4, nil, keep(l4, 1, 0)},
		// Top-p after top-k works on the renormalised 0.5/0.9, 0.25/0.9,
		// 0.15/0.9: 0.167 <= 0.25 goes; without top-k 0.1 <= 0.25 and
		// 0.25 > 0.25 keeps three.
		{"top-p on top-k's renormalised distribution", opts(func(o *Options) { o.TopK, o.TopP = 3, 0.75 }),
			l4, nil, keep(l4, 1, 0, 1)},
		// threshold 0.28·0.5 = 0.14: 0.15 stays, 0.1 goes.
		{"min-p 0.28", opts(func(o *Options) { o.MinP = 0.28 }), l4, nil, keep(l4, 1, 0, 1, 2)},
		{"min-p 0.45", opts(func(o *Options) { o.MinP = 0.45 }), l4, nil, keep(l4, 1, 0, 1)},
		{"min-p 0.99 keeps the most likely", opts(func(o *Options) { o.MinP = 0.99 }), l4, nil, keep(l4, 1, 0)},
		// Temperature comes first: at t=2 the probabilities go as sqrt(p)
		// and 0.7·sqrt(0.5) = 0.495 keeps sqrt(0.25) = 0.5 and drops
		// sqrt(0.15) = 0.387; at t=1 0.7·0.5 would drop 0.25 too.
		{"min-p after temperature", opts(func(o *Options) { o.Temperature, o.MinP = 2, 0.7 }),
			l4, nil, keep(l4, 2, 0, 1)},
		// Penalty first: logit ln 0.5 < 0 becomes 2 ln 0.5 = ln 0.25, so
		// token 0 drops to about token 1's level and top-k 2 keeps 0 and 1
		// with the penalised logit.
		{"penalty before top-k", opts(func(o *Options) { o.RepetitionPenalty, o.TopK = 2, 2 }),
			l4, []int32{0}, keep([]float32{2 * l4[0], l4[1], l4[2], l4[3]}, 1, 0, 1)},
		{"-Inf logits get nothing", opts(nil), []float32{0, float32(math.Inf(-1)), 0},
			nil, []float64{0.5, 0, 0.5}},
	}
	for _, c := range cases {
		checkProbs(t, c.name, probs(t, c.o, c.logits, c.hist...), c.want)
	}
}

// TestSamplerGreedy checks temperature 0 and top-k 1: the largest logit
// after the penalty, the lowest id on ties.
func TestSamplerGreedy(t *testing.T) {
	cases := []struct {
		name   string
		o      Options
		logits []float32
		hist   []int32
		want   int32
	}{
		{"largest", opts(func(o *Options) { o.Temperature = 0 }), []float32{1, 3, 2}, nil, 1},
		{"lowest id on a tie", opts(func(o *Options) { o.Temperature = 0 }), []float32{1, 3, 3}, nil, 1},
		{"top-k 1", opts(func(o *Options) { o.TopK = 1 }), []float32{1, 2, 3, 3}, nil, 2},
		{"penalised positive", opts(func(o *Options) { o.Temperature, o.RepetitionPenalty = 0, 2 }),
			[]float32{3, 2}, []int32{0}, 1},
		{"penalised negative", opts(func(o *Options) { o.Temperature, o.RepetitionPenalty = 0, 2 }),
			[]float32{-1, -1.5}, []int32{0}, 1},
	}
	for _, c := range cases {
		s, err := NewSampler(c.o, len(c.logits))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Observe(c.hist...); err != nil {
			t.Fatal(err)
		}
		got, err := s.Sample(c.logits)
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.name, got, err, c.want)
		}
		p, err := s.Probs(c.logits, nil)
		if err != nil || p[c.want] != 1 {
			t.Errorf("%s: probabilities %v, %v; want 1 on %d", c.name, p, err, c.want)
		}
	}
}

// refTopP is Hugging Face's TopPLogitsWarper written plainly: sort up,
// drop while the cumulative sum is <= 1-p, never the last.
func refTopP(x []float64, p float64) []float64 {
	probs := softmax64(x)
	ids := make([]int, len(x))
	for i := range ids {
		ids[i] = i
	}
	slices.SortFunc(ids, func(a, b int) int {
		if x[a] != x[b] {
			if x[a] < x[b] {
				return -1
			}
			return 1
		}
		return b - a // the higher id first among ties
	})
	var cum float64
	drop := make([]bool, len(x))
	for _, id := range ids[:len(ids)-1] {
		if cum += probs[id]; cum > 1-p {
			break
		}
		drop[id] = true
	}
	kept := make([]float64, len(x))
	for i := range x {
		if !drop[i] {
			kept[i] = x[i]
		} else {
			kept[i] = math.Inf(-1)
		}
	}
	return softmax64(kept)
}

// TestTopPLargeVocab checks top-p on 5000 random logits (where the sampler
// leaves the tokens far below the cut out of its sort) against the plain
// algorithm: the same kept tokens, probabilities to probTol.
func TestTopPLargeVocab(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, p := range []float64{0.05, 0.5, 0.9, 0.99} {
		logits := make([]float32, 5000)
		x := make([]float64, len(logits))
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * 3)
			x[i] = float64(logits[i])
		}
		got := probs(t, opts(func(o *Options) { o.TopP = p }), logits)
		checkProbs(t, "top-p", got, refTopP(x, p))
	}
}

// TestSampleFollowsProbs draws 3000 tokens under top-k 2 and checks the
// support and the frequencies (within 5 standard deviations).
func TestSampleFollowsProbs(t *testing.T) {
	logits := logsOf(0.1, 0.5, 0.15, 0.25)
	s, err := NewSampler(opts(func(o *Options) { o.TopK = 2; o.Seed = 11 }), 4)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var count [4]int
	for range n {
		tok, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		count[tok]++
	}
	if count[0] != 0 || count[2] != 0 {
		t.Fatalf("counts %v: only tokens 1 and 3 are in the top 2", count)
	}
	p := 0.5 / 0.75
	want, sd := n*p, math.Sqrt(n*p*(1-p))
	if math.Abs(float64(count[1])-want) > 5*sd {
		t.Fatalf("token 1 drawn %d times of %d, want %.0f ± %.0f", count[1], n, want, 5*sd)
	}
}

// TestSamplerSeed checks that the same seed gives the same draws, another
// seed other draws, and Reset starts over.
func TestSamplerSeed(t *testing.T) {
	logits := make([]float32, 50)
	draw := func(s *Sampler) []int32 {
		var out []int32
		for range 20 {
			tok, err := s.Sample(logits)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, tok)
		}
		return out
	}
	mk := func(seed uint64) *Sampler {
		s, err := NewSampler(opts(func(o *Options) { o.Seed = seed }), len(logits))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, c := mk(1), mk(1), mk(2)
	da := draw(a)
	if db := draw(b); !slices.Equal(da, db) {
		t.Fatalf("seed 1 twice: %v and %v", da, db)
	}
	if dc := draw(c); slices.Equal(da, dc) {
		t.Fatalf("seeds 1 and 2 drew the same %v", da)
	}
	a.Reset()
	if again := draw(a); !slices.Equal(da, again) {
		t.Fatalf("after Reset: %v, want %v", again, da)
	}
}

// TestSamplerErrors checks bad logits and ids.
func TestSamplerErrors(t *testing.T) {
	s, err := NewSampler(opts(nil), 3)
	if err != nil {
		t.Fatal(err)
	}
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		logits []float32
		want   error
	}{
		{[]float32{0, float32(math.NaN()), 0}, api.ErrOutOfRange},
		{[]float32{0, inf, 0}, api.ErrOutOfRange},
		{[]float32{-inf, -inf, -inf}, api.ErrOutOfRange},
		{[]float32{0, 0}, api.ErrShape},
	} {
		if _, err := s.Sample(c.logits); !errors.Is(err, c.want) {
			t.Errorf("Sample(%v): %v, want %v", c.logits, err, c.want)
		}
	}
	if err := s.Observe(1, 3); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("Observe(3) with 3 tokens: %v, want out of range", err)
	}
	if _, err := NewSampler(opts(nil), 0); !errors.Is(err, api.ErrConfig) {
		t.Errorf("NewSampler with no vocabulary: %v", err)
	}
	if _, err := NewSampler(opts(func(o *Options) { o.EOS = []int32{3} }), 3); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("EOS 3 of 3 tokens: %v", err)
	}
}

// TestValidate checks that each option out of its domain is refused with
// its flag's name.
func TestValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		mod  func(*Options)
		flag string
	}{
		{func(o *Options) { o.MaxTokens = 0 }, "--max-tokens 0"},
		{func(o *Options) { o.Temperature = -0.5 }, "--temperature -0.5"},
		{func(o *Options) { o.Temperature = math.NaN() }, "--temperature NaN"},
		{func(o *Options) { o.Temperature = math.Inf(1) }, "--temperature +Inf"},
		{func(o *Options) { o.TopK = -1 }, "--top-k -1"},
		{func(o *Options) { o.TopP = 1.5 }, "--top-p 1.5"},
		{func(o *Options) { o.TopP = 0 }, "--top-p 0"},
		{func(o *Options) { o.MinP = 1 }, "--min-p 1"},
		{func(o *Options) { o.MinP = -0.1 }, "--min-p -0.1"},
		{func(o *Options) { o.RepetitionPenalty = 0 }, "--repetition-penalty 0"},
		{func(o *Options) { o.RepetitionPenalty = math.Inf(1) }, "--repetition-penalty +Inf"},
		{func(o *Options) { o.EOS = []int32{2, -1} }, "--eos -1"},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.mod(&o)
		err := o.Validate()
		if !errors.Is(err, api.ErrConfig) || !strings.HasPrefix(err.Error(), c.flag+": ") {
			t.Errorf("%s: got %v", c.flag, err)
		}
	}
	to := TextOptions{Options: DefaultOptions(), Stop: []string{"a", ""}}
	if err := to.Validate(); !errors.Is(err, api.ErrConfig) || !strings.HasPrefix(err.Error(), `--stop "": `) {
		t.Errorf("empty stop string: %v", err)
	}
	to.Stop = []string{"\xff"}
	if err := to.Validate(); !errors.Is(err, api.ErrConfig) {
		t.Errorf("invalid UTF-8 stop string: %v", err)
	}
}

// TestSampleNoAlloc checks that sampling allocates nothing per token, on the
// paths with and without a sort.
func TestSampleNoAlloc(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, 4096)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 2)
	}
	for name, o := range map[string]Options{
		"all rules": opts(func(o *Options) { o.TopK, o.TopP, o.MinP, o.RepetitionPenalty = 40, 0.9, 0.05, 1.2 }),
		"top-p":     opts(func(o *Options) { o.TopP = 0.8 }),
		"greedy":    opts(func(o *Options) { o.Temperature, o.RepetitionPenalty = 0, 1.3 }),
	} {
		s, err := NewSampler(o, len(logits))
		if err != nil {
			t.Fatal(err)
		}
		var sampleErr error
		allocs := testing.AllocsPerRun(50, func() {
			tok, err := s.Sample(logits)
			if err != nil {
				sampleErr = err
			}
			if err := s.Observe(tok); err != nil {
				sampleErr = err
			}
		})
		if sampleErr != nil {
			t.Fatal(sampleErr)
		}
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per token, want 0", name, allocs)
		}
	}
}
