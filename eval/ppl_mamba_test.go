package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyMamba returns a randomly initialised Mamba of 2 layers, width 32,
// vocabulary 96, its (tied) embedding scaled by 4 so that the logits
// spread far from uniform and the predictions depend on the context.
func tinyMamba(t *testing.T) *mamba.Model {
	t.Helper()
	c := mamba.DefaultConfig(mamba.NameMamba)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize = 96, 32, 2, 8
	c.IntermediateSize, c.TimeStepRank = c.Expand*c.HiddenSize, 2
	m, err := mamba.New(c, cpu.New(api.BackendOptions{Threads: 2}), 11)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Parameters() {
		if p.Name == "backbone.embeddings.weight" {
			w := p.Value.(api.HostFloat32s).HostFloat32s()
			for i := range w {
				w[i] *= 4
			}
		}
	}
	return m
}

// TestPerplexityMatchesLoss checks, on a tiny random Mamba, that the
// perplexity of a stream is exp of the model's own mean cross-entropy
// (LossAndGrad over inputs ids[:-1] and targets ids[1:]) to 1e-5
// relative, in the recurrent mode (chunks of 7, and of 1) and in the
// parallel mode with a window longer than the stream; that the two modes
// agree to 1e-5 relative; and that a split of the stream into Feed calls
// gives the same bits in both modes, windows shorter than the stream
// included.
func TestPerplexityMatchesLoss(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t)
	r := rand.New(rand.NewPCG(5, 6))
	ids := make([]int32, 50)
	for i := range ids {
		ids[i] = int32(r.IntN(96))
	}
	loss, err := m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{ids[:len(ids)-1]}, Targets: [][]int32{ids[1:]}})
	if err != nil {
		t.Fatal(err)
	}
	want := math.Exp(loss)
	rel := func(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }
	results := map[string]PerplexityResult{}
	for name, o := range map[string]PerplexityOptions{
		"recurrent":         {Chunk: 7},
		"recurrent chunk 1": {Chunk: 1},
		"parallel":          {Mode: ModeParallel, Context: 64},
	} {
		res, err := ScorePerplexity(ctx, m, ids, o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Tokens != int64(len(ids)-1) {
			t.Errorf("%s: %d tokens, want %d", name, res.Tokens, len(ids)-1)
		}
		if e := rel(res.Perplexity, want); !(e <= 1e-5) {
			t.Errorf("%s: perplexity %.9g, exp(loss) %.9g: relative error %.3g > 1e-5", name, res.Perplexity, want, e)
		}
		t.Logf("%s: perplexity %.9g, exp(loss) %.9g", name, res.Perplexity, want)
		results[name] = res
	}
	if e := rel(results["recurrent"].NLL, results["parallel"].NLL); !(e <= 1e-5) {
		t.Errorf("recurrent NLL %.9g, parallel %.9g: relative difference %.3g > 1e-5", results["recurrent"].NLL, results["parallel"].NLL, e)
	}
	// The model uses the context: with one token of it the score moves.
	short, err := ScorePerplexity(ctx, m, ids, PerplexityOptions{Mode: ModeParallel, Context: 2, Stride: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e := rel(short.NLL, results["parallel"].NLL); !(e > 1e-3) {
		t.Errorf("windows of 2 tokens: NLL %.9g, whole history %.9g: the model barely uses its context", short.NLL, results["parallel"].NLL)
	}

	for _, o := range []PerplexityOptions{{Chunk: 7}, {Mode: ModeParallel, Context: 16, Stride: 6}} {
		whole, err := ScorePerplexity(ctx, m, ids, o)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPerplexity(m, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, piece := range [][2]int{{0, 3}, {3, 3}, {3, 20}, {20, 21}, {21, 50}} {
			if err := p.Feed(ctx, ids[piece[0]:piece[1]]); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if got := p.Result(); got != whole {
			t.Errorf("%+v: fed in pieces %+v, at once %+v", o, got, whole)
		}
	}
}
