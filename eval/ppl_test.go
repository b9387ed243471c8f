package eval

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// The fake model of the perplexity tests: 16 tokens; the logits of a token
// at position pos favour the next id, (id+1) mod 16, by (pos+1)/4, so
// that each target's log-probability tells the position it was predicted
// from: -g(pos). The streams are 0, 1, 2, ..., so every target is the
// favoured id.
const posVocab = 16

func posRow(pos int, id int32) []float32 {
	row := make([]float32, posVocab)
	row[(id+1)%posVocab] = float32(pos+1) / 4
	return row
}

// g is the NLL of the favoured id at position pos, in float64 from the
// same float32 logit.
func g(pos int) float64 {
	a := float64(float32(pos+1) / 4)
	return math.Log(math.Exp(a)+posVocab-1) - a
}

func countingIDs(n int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(i % posVocab)
	}
	return ids
}

// TestPerplexityByHand checks the windows each mode runs, and which
// position predicts each token, on cases worked out by hand. NLLs to
// 1e-12 relative (the same float64 terms, summed in another order).
func TestPerplexityByHand(t *testing.T) {
	sumG := func(rows ...int) float64 {
		var s float64
		for _, r := range rows {
			s += g(r)
		}
		return s
	}
	type call struct {
		method   string
		pos      int
		from, to int // the ids are countingIDs[from:to]
	}
	cases := []struct {
		name   string
		n      int
		o      PerplexityOptions
		tokens int64
		nll    float64 // total
		calls  []call
	}{
		{
			// Windows [0,4) [2,6) [4,8) [6,10); each after the first
			// scores the two tokens past the one before, from rows 1, 2.
			name: "parallel overlapping", n: 10, o: PerplexityOptions{Mode: ModeParallel, Context: 4, Stride: 2},
			tokens: 9, nll: sumG(0, 1, 2, 1, 2, 1, 2, 1, 2),
			calls: []call{{"forward", 0, 0, 3}, {"forward", 0, 2, 5}, {"forward", 0, 4, 7}, {"forward", 0, 6, 9}},
		},
		{
			// As above, then the last window [8,11) scores token 10 only.
			name: "parallel overlapping, short last window", n: 11, o: PerplexityOptions{Mode: ModeParallel, Context: 4, Stride: 2},
			tokens: 10, nll: sumG(0, 1, 2, 1, 2, 1, 2, 1, 2, 1),
			calls: []call{{"forward", 0, 0, 3}, {"forward", 0, 2, 5}, {"forward", 0, 4, 7}, {"forward", 0, 6, 9}, {"forward", 0, 8, 10}},
		},
		{
			// Disjoint windows [0,4) [4,8) [8,10): tokens 0, 4 and 8
			// open a window and are not scored.
			name: "parallel disjoint", n: 10, o: PerplexityOptions{Mode: ModeParallel, Context: 4, Stride: 4},
			tokens: 7, nll: sumG(0, 1, 2, 0, 1, 2, 0),
			calls: []call{{"forward", 0, 0, 3}, {"forward", 0, 4, 7}, {"forward", 0, 8, 9}},
		},
		{
			name: "parallel, stream shorter than the window", n: 3, o: PerplexityOptions{Mode: ModeParallel, Context: 4},
			tokens: 2, nll: sumG(0, 1),
			calls: []call{{"forward", 0, 0, 2}},
		},
		{
			// Chunks [0,4) [4,8), then token 8 alone (token 9 predicts
			// nothing); token p is predicted from position p-1.
			name: "recurrent", n: 10, o: PerplexityOptions{Chunk: 4},
			tokens: 9, nll: sumG(0, 1, 2, 3, 4, 5, 6, 7, 8),
			calls: []call{{"prefill", 0, 0, 4}, {"prefill", 4, 4, 8}, {"prefill", 8, 8, 9}},
		},
		{
			// Token 8 is predicted by the logits kept from chunk [4,8).
			name: "recurrent, last token after a whole chunk", n: 9, o: PerplexityOptions{Chunk: 4},
			tokens: 8, nll: sumG(0, 1, 2, 3, 4, 5, 6, 7),
			calls: []call{{"prefill", 0, 0, 4}, {"prefill", 4, 4, 8}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newFake(posVocab, posRow)
			ids := countingIDs(c.n)
			r, err := ScorePerplexity(context.Background(), m, ids, c.o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Tokens != c.tokens {
				t.Errorf("tokens %d, want %d", r.Tokens, c.tokens)
			}
			want := c.nll / float64(c.tokens)
			if math.Abs(r.NLL-want) > 1e-12*want {
				t.Errorf("NLL %.15g, want %.15g", r.NLL, want)
			}
			if math.Abs(r.Perplexity-math.Exp(want)) > 1e-12*math.Exp(want) {
				t.Errorf("perplexity %.15g, want exp(NLL) %.15g", r.Perplexity, math.Exp(want))
			}
			if len(m.calls) != len(c.calls) {
				t.Fatalf("%d model calls, want %d: %v", len(m.calls), len(c.calls), m.calls)
			}
			for i, w := range c.calls {
				got := m.calls[i]
				if got.method != w.method || got.pos != w.pos || !slices.Equal(got.ids, ids[w.from:w.to]) {
					t.Errorf("call %d: %s at %d of %v, want %s at %d of %v", i, got.method, got.pos, got.ids, w.method, w.pos, ids[w.from:w.to])
				}
			}
		})
	}
}

// TestPerplexityFeedSplits checks that any split of the stream into Feed
// calls (empty pieces included) gives the same result to the bit, and that
// the progress hook counts up to the stream's length.
func TestPerplexityFeedSplits(t *testing.T) {
	ctx := context.Background()
	ids := countingIDs(37)
	for _, o := range []PerplexityOptions{
		{Chunk: 5},
		{Chunk: 1},
		{Mode: ModeParallel, Context: 6, Stride: 4},
		{Mode: ModeParallel, Context: 5, Stride: 5},
	} {
		want, err := ScorePerplexity(ctx, newFake(posVocab, posRow), ids, o)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		for trial := range 20 {
			var seen []int64
			o.Progress = func(n int64) { seen = append(seen, n) }
			p, err := NewPerplexity(newFake(posVocab, posRow), o)
			if err != nil {
				t.Fatal(err)
			}
			for rest := ids; len(rest) > 0; {
				n := min(len(rest), r.IntN(9))
				if err := p.Feed(ctx, rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := p.Finish(ctx); err != nil {
				t.Fatal(err)
			}
			if got := p.Result(); got != want {
				t.Fatalf("%+v, trial %d: %+v, want %+v", o, trial, got, want)
			}
			if len(seen) == 0 || seen[len(seen)-1] != int64(len(ids)) || !slices.IsSorted(seen) {
				t.Fatalf("%+v: progress %v: want a rising count up to %d", o, seen, len(ids))
			}
		}
	}
}

// TestPerplexityErrors checks the errors of Feed and Finish and what state
// they leave.
func TestPerplexityErrors(t *testing.T) {
	ctx := context.Background()
	p, err := NewPerplexity(newFake(posVocab, posRow), PerplexityOptions{Chunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	// An id out of range is refused and leaves the scorer usable.
	if err := p.Feed(ctx, []int32{1, 2, posVocab}); !errors.Is(err, api.ErrOutOfRange) {
		t.Fatalf("id %d: %v, want ErrOutOfRange", posVocab, err)
	}
	if err := p.Feed(ctx, []int32{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if r := p.Result(); r.Tokens != 4 {
		t.Fatalf("%d tokens scored, want 4", r.Tokens)
	}
	if err := p.Feed(ctx, []int32{1}); err == nil {
		t.Fatal("Feed after Finish: no error")
	}

	// A cancelled context stops the scorer for good.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p, _ = NewPerplexity(newFake(posVocab, posRow), PerplexityOptions{Mode: ModeParallel, Context: 4})
	if err := p.Feed(cctx, countingIDs(9)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v, want context.Canceled", err)
	}
	if err := p.Finish(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Finish after a failure: %v, want the failure again", err)
	}

	// One token predicts nothing.
	if _, err := ScorePerplexity(ctx, newFake(posVocab, posRow), []int32{3}, PerplexityOptions{}); !errors.Is(err, api.ErrOutOfRange) {
		t.Fatalf("one token: %v, want ErrOutOfRange", err)
	}
	if r, err := ScorePerplexity(ctx, newFake(posVocab, posRow), nil, PerplexityOptions{Mode: ModeParallel}); !errors.Is(err, api.ErrOutOfRange) || !math.IsNaN(r.NLL) {
		t.Fatalf("no tokens: NLL %v, %v; want NaN and ErrOutOfRange", r.NLL, err)
	}
}

// TestPerplexityBitsPerByte checks BitsPerByte against the total NLL.
func TestPerplexityBitsPerByte(t *testing.T) {
	ctx := context.Background()
	p, _ := NewPerplexity(newFake(posVocab, posRow), PerplexityOptions{})
	p.AddBytes(20)
	p.AddBytes(-5)
	if err := p.Feed(ctx, countingIDs(6)); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	r := p.Result()
	want := (g(0) + g(1) + g(2) + g(3) + g(4)) / (20 * math.Ln2)
	if r.Bytes != 20 || math.Abs(r.BitsPerByte-want) > 1e-12*want {
		t.Fatalf("%d bytes, %.15g bits per byte; want 20, %.15g", r.Bytes, r.BitsPerByte, want)
	}
}

// TestPerplexityOptionsValidate checks the domains and that errors name
// the flag.
func TestPerplexityOptionsValidate(t *testing.T) {
	ok := []PerplexityOptions{
		{}, {Mode: ModeRecurrent, Chunk: 1}, {Mode: ModeParallel}, {Mode: ModeParallel, Context: 2, Stride: 2},
		{Mode: ModeParallel, Stride: DefaultContext}, {Mode: ModeRecurrent, Context: -1}, // context: parallel only
	}
	for _, o := range ok {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := map[string]PerplexityOptions{
		"--mode":    {Mode: "chunkwise"},
		"--chunk":   {Chunk: -1},
		"--context": {Mode: ModeParallel, Context: 1},
		"--stride":  {Mode: ModeParallel, Context: 8, Stride: 9},
	}
	for flag, o := range bad {
		err := o.Validate()
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), flag) {
			t.Errorf("%+v: %v, want ErrConfig naming %s", o, err, flag)
		}
		if _, err := NewPerplexity(newFake(posVocab, posRow), o); !errors.Is(err, api.ErrConfig) {
			t.Errorf("NewPerplexity(%+v): %v, want ErrConfig", o, err)
		}
	}
	if d := (PerplexityOptions{Mode: ModeParallel, Context: 3}).withDefaults(); d.Stride != 1 || d.Chunk != DefaultChunk {
		t.Errorf("defaults of context 3: stride %d, chunk %d; want 1, %d", d.Stride, d.Chunk, DefaultChunk)
	}
	if d := (PerplexityOptions{}).withDefaults(); d.Mode != ModeRecurrent || d.Context != DefaultContext || d.Stride != DefaultContext/2 {
		t.Errorf("defaults: %+v", d)
	}
}
