package eval

import (
	"context"
	"errors"
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

// TestPerplexityDocResets checks the recurrent mode with DocResets: the
// perplexity of a stream of documents, each ended by a separator, is exp
// of the model's loss on the same tokens packed with a document starting
// after each separator (what training with document resets computes), in
// chunks that cut documents anywhere; and it differs from the perplexity
// without resets.
func TestPerplexityDocResets(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t)
	r := rand.New(rand.NewPCG(7, 8))
	const sep = 95
	var ids []int32
	for _, n := range []int{9, 1, 14, 5, 11} {
		for range n {
			ids = append(ids, int32(r.IntN(sep)))
		}
		ids = append(ids, sep)
	}
	in, tg := ids[:len(ids)-1], ids[1:]
	var starts []int
	for i, id := range in[:len(in)-1] {
		if id == sep {
			starts = append(starts, i+1)
		}
	}
	loss, err := m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}, Starts: [][]int{starts}})
	if err != nil {
		t.Fatal(err)
	}
	want := math.Exp(loss)
	for _, chunk := range []int{1, 4, 7, 64} {
		res, err := ScorePerplexity(ctx, m, ids, PerplexityOptions{Chunk: chunk, DocResets: true, Separator: sep})
		if err != nil {
			t.Fatal(err)
		}
		if e := math.Abs(res.Perplexity-want) / want; res.Tokens != int64(len(tg)) || !(e <= 1e-5) {
			t.Errorf("chunk %d: perplexity %.9g over %d tokens, packed loss %.9g over %d: relative error %.3g", chunk, res.Perplexity, res.Tokens, want, len(tg), e)
		}
	}
	plain, err := ScorePerplexity(ctx, m, ids, PerplexityOptions{Chunk: 7})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(plain.Perplexity-want) < 1e-3*want {
		t.Errorf("perplexity without resets %.6g is that with them", plain.Perplexity)
	}
	if _, err := NewPerplexity(m, PerplexityOptions{Mode: ModeParallel, DocResets: true}); !errors.Is(err, api.ErrConfig) {
		t.Errorf("document resets in the parallel mode: %v", err)
	}
}

// TestPerplexityInitialState checks the recurrent mode from a starting
// state (a state prefilled with a prefix): the stream is scored as the
// prefix followed by it, and with DocResets every document starts from
// the prefix's state again; the state given is left as it was.
func TestPerplexityInitialState(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t)
	r := rand.New(rand.NewPCG(9, 10))
	const sep = 95
	draw := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(r.IntN(sep))
		}
		return out
	}
	prefix := draw(6)
	init, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prefill(ctx, init, [][]int32{prefix}, api.Form{}); err != nil {
		t.Fatal(err)
	}
	docs := [][]int32{append(draw(8), sep), append(draw(3), sep), append(draw(10), sep)}
	// logitsAfter returns the logits of doc's tokens run after the prefix.
	logitsAfter := func(doc []int32) [][]float32 {
		l, err := m.Forward(ctx, [][]int32{append(append([]int32(nil), prefix...), doc...)}, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		all := api.Float32s(l)
		var rows [][]float32
		for i := range doc {
			rows = append(rows, all[(len(prefix)+i)*96:(len(prefix)+i+1)*96])
		}
		return rows
	}
	nll := func(row []float32, y int32) float64 {
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v) - mx)
		}
		return mx + math.Log(s) - float64(row[y])
	}
	var stream []int32
	for _, d := range docs {
		stream = append(stream, d...)
	}
	// Without resets: the prefix, then the whole stream.
	var sum float64
	whole := logitsAfter(stream)
	for i := range stream[1:] {
		sum += nll(whole[i], stream[i+1])
	}
	want := math.Exp(sum / float64(len(stream)-1))
	// With resets: each document after the prefix; a document's first token
	// from the logits of the separator before it.
	sum = 0
	var last []float32
	for _, d := range docs {
		rows := logitsAfter(d)
		if last != nil {
			sum += nll(last, d[0])
		}
		for i := range d[1:] {
			sum += nll(rows[i], d[i+1])
		}
		last = rows[len(d)-1]
	}
	wantResets := math.Exp(sum / float64(len(stream)-1))
	before, err := m.SaveState(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		o    PerplexityOptions
		want float64
	}{
		"from the state":             {PerplexityOptions{Chunk: 5, Initial: init}, want},
		"from the state, doc resets": {PerplexityOptions{Chunk: 5, Initial: init, DocResets: true, Separator: sep}, wantResets},
		"chunk 1, doc resets":        {PerplexityOptions{Chunk: 1, Initial: init, DocResets: true, Separator: sep}, wantResets},
	} {
		res, err := ScorePerplexity(ctx, m, stream, c.o)
		if err != nil {
			t.Fatal(err)
		}
		if e := math.Abs(res.Perplexity-c.want) / c.want; !(e <= 1e-5) {
			t.Errorf("%s: perplexity %.9g, want %.9g: relative error %.3g", name, res.Perplexity, c.want, e)
		}
	}
	after, err := m.SaveState(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := before.MaxDiff(after); err != nil || d != 0 {
		t.Fatalf("the starting state changed: %v (%v)", d, err)
	}
	if _, err := NewPerplexity(m, PerplexityOptions{Mode: ModeParallel, Initial: init}); !errors.Is(err, api.ErrConfig) {
		t.Errorf("a starting state in the parallel mode: %v", err)
	}
}
