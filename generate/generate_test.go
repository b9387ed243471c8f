package generate

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

var prompt7 = []int32{5, 17, 300, 2, 999, 40, 40}

func gen(t *testing.T, m api.Model, prompts [][]int32, o Options) [][]int32 {
	t.Helper()
	out, err := Generate(context.Background(), m, prompts, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sampling(seed uint64) Options {
	o := DefaultOptions()
	o.MaxTokens, o.Temperature, o.TopK, o.TopP, o.MinP, o.RepetitionPenalty, o.Seed = 12, 0.9, 200, 0.95, 0.01, 1.1, seed
	return o
}

// TestGreedyMatchesForward checks greedy decoding on a tiny Mamba against
// the argmax of the parallel form's logits over prompt and output: at every
// position the token decoded (prefill, then Steps) is the argmax of
// Forward's logits there.
func TestGreedyMatchesForward(t *testing.T) {
	m := tinyMamba(t, 1)
	o := DefaultOptions()
	o.MaxTokens = 16
	out := gen(t, m, [][]int32{prompt7}, o)[0]
	if len(out) != o.MaxTokens {
		t.Fatalf("%d tokens, want %d", len(out), o.MaxTokens)
	}
	full := append(slices.Clone(prompt7), out...)
	logits, err := m.Forward(context.Background(), [][]int32{full}, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	all := api.Float32s(logits)
	V := m.Config().Vocab()
	minGap := math.Inf(1)
	for i, tok := range out {
		pos := len(prompt7) - 1 + i
		want, gap := argmax(all[pos*V : (pos+1)*V])
		if tok != want {
			t.Fatalf("token %d: decoded %d, Forward's argmax is %d (gap to the next %.3g)", i, tok, want, gap)
		}
		minGap = min(minGap, gap)
	}
	t.Logf("smallest gap between the top two logits: %.3g", minGap)
}

// TestTopK1IsGreedy checks that top-k 1 with sampling on gives exactly the
// greedy tokens.
func TestTopK1IsGreedy(t *testing.T) {
	m := tinyMamba(t, 2)
	greedy := DefaultOptions()
	greedy.MaxTokens = 12
	topk := sampling(9)
	topk.TopK, topk.RepetitionPenalty = 1, 1
	a, b := gen(t, m, [][]int32{prompt7}, greedy), gen(t, m, [][]int32{prompt7}, topk)
	if !slices.Equal(a[0], b[0]) {
		t.Fatalf("top-k 1 gave %v, greedy %v", b[0], a[0])
	}
}

// TestSeededSampling checks that sampling with a seed is reproducible and
// that another seed gives other tokens.
func TestSeededSampling(t *testing.T) {
	m := tinyMamba(t, 3)
	a := gen(t, m, [][]int32{prompt7}, sampling(1))[0]
	b := gen(t, m, [][]int32{prompt7}, sampling(1))[0]
	c := gen(t, m, [][]int32{prompt7}, sampling(2))[0]
	if !slices.Equal(a, b) {
		t.Fatalf("seed 1 twice: %v and %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 1 and 2 both gave %v", a)
	}
}

// TestBatchEqualsOneByOne checks that a batch of three prompts of different
// lengths gives what three calls give, greedy and sampled, with an EOS that
// ends one sequence early.
func TestBatchEqualsOneByOne(t *testing.T) {
	m := tinyMamba(t, 4)
	prompts := [][]int32{prompt7, {8, 9, 10}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}
	greedy := DefaultOptions()
	greedy.MaxTokens = 10
	for name, o := range map[string]Options{"greedy": greedy, "sampled": sampling(5)} {
		single := func(o Options) [][]int32 {
			var out [][]int32
			for _, p := range prompts {
				out = append(out, gen(t, m, [][]int32{p}, o)[0])
			}
			return out
		}
		// An EOS the second sequence meets half way.
		o.EOS = []int32{single(o)[1][4]}
		want := single(o)
		if len(want[1]) >= o.MaxTokens {
			t.Fatalf("%s: the EOS %d did not end sequence 1: %v", name, o.EOS[0], want[1])
		}
		got := gen(t, m, prompts, o)
		for i := range prompts {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s: sequence %d: batch gave %v, alone %v", name, i, got[i], want[i])
			}
		}
	}
}

// TestBatchLongPrompts checks the prefill windows and the lockstep scheme
// on a model whose logits depend exactly on the whole sequence: prompts of
// 1100, 1300 and 700 tokens prefill 700 tokens in windows of 512 and 188,
// and the batch equals one call per prompt token for token.
func TestBatchLongPrompts(t *testing.T) {
	prompts := make([][]int32, 3)
	for i, n := range []int{1100, 1300, 700} {
		for k := range n {
			prompts[i] = append(prompts[i], int32((k*7+i)%50))
		}
	}
	o := sampling(8)
	o.MaxTokens = 20
	m := newFake(50, hashLogits)
	got := gen(t, m, prompts, o)
	if !slices.Equal(m.prefill, []int{512, 188}) {
		t.Errorf("prefill windows %v, want [512 188]", m.prefill)
	}
	if wantSteps := 1300 - 700 + o.MaxTokens - 1; m.steps != wantSteps {
		t.Errorf("%d steps, want %d", m.steps, wantSteps)
	}
	for i, p := range prompts {
		one := newFake(50, hashLogits)
		want := gen(t, one, [][]int32{p}, o)[0]
		if !slices.Equal(got[i], want) {
			t.Errorf("sequence %d: batch gave %v, alone %v", i, got[i], want)
		}
	}
}

// TestEOSStops checks that an EOS token ends the sequence and is left out.
func TestEOSStops(t *testing.T) {
	m := tinyMamba(t, 5)
	o := DefaultOptions()
	o.MaxTokens = 10
	full := gen(t, m, [][]int32{prompt7}, o)[0]
	o.EOS = []int32{full[3], 1007}
	got := gen(t, m, [][]int32{prompt7}, o)[0]
	want := full[:slices.Index(full, full[3])]
	if !slices.Equal(got, want) {
		t.Fatalf("with EOS %d: %v, want %v", full[3], got, want)
	}
}

// TestYieldAndCancel checks that yield sees every token, that yield
// returning false stops decoding without an error, and that cancelling the
// context stops it with the context's error.
func TestYieldAndCancel(t *testing.T) {
	m := newFake(50, hashLogits)
	o := sampling(3)
	var seen []int32
	out, err := Generate(context.Background(), m, [][]int32{{1, 2}}, o, func(seq int, tok int32) bool {
		seen = append(seen, tok)
		return len(seen) < 4
	})
	if err != nil || len(out[0]) != 4 || !slices.Equal(out[0], seen) {
		t.Fatalf("stopped after 4: %v, %v (yielded %v)", out, err, seen)
	}
	if m.steps != 3 {
		t.Errorf("%d steps for 4 tokens, want 3", m.steps)
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	out, err = Generate(ctx, m, [][]int32{{1, 2}}, o, func(int, int32) bool {
		if n++; n == 3 {
			cancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) || len(out[0]) != 3 {
		t.Fatalf("cancelled after 3 tokens: %v, %v", out, err)
	}
	if _, err := Generate(ctx, m, [][]int32{{1, 2}}, o, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}
}

// TestTokens checks the iterator: the same tokens as Generate, breaking out
// stops decoding, and an error comes once.
func TestTokens(t *testing.T) {
	m := tinyMamba(t, 6)
	o := sampling(4)
	want := gen(t, m, [][]int32{prompt7}, o)[0]
	var got []int32
	for tok, err := range Tokens(context.Background(), m, prompt7, o) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tok)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Tokens gave %v, Generate %v", got, want)
	}

	f := newFake(50, hashLogits)
	n := 0
	for _, err := range Tokens(context.Background(), f, []int32{3}, o) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	if f.steps != 2 {
		t.Errorf("broke out after 3 tokens: %d steps, want 2", f.steps)
	}

	var errs []error
	for tok, err := range Tokens(context.Background(), f, nil, o) {
		if tok != 0 || err == nil {
			t.Fatalf("empty prompt yielded %d, %v", tok, err)
		}
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], api.ErrConfig) {
		t.Fatalf("empty prompt: errors %v, want one wrapping ErrConfig", errs)
	}
}

// TestTokensBodyPanic checks that a panic in the loop body reaches the
// caller of the loop, as a range-over-func loop requires.
func TestTokensBodyPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != "body" {
			t.Fatalf("recovered %v, want the body's panic", r)
		}
	}()
	for range Tokens(context.Background(), newFake(50, hashLogits), []int32{1}, sampling(1)) {
		panic("body")
	}
}

// TestBadInputs checks the errors for bad prompts and options, given before
// the model runs.
func TestBadInputs(t *testing.T) {
	m := newFake(50, hashLogits)
	ctx := context.Background()
	o := sampling(1)
	if out, err := Generate(ctx, m, nil, o, nil); err != nil || len(out) != 0 {
		t.Errorf("no prompts: %v, %v", out, err)
	}
	bad := o
	bad.TopP = 2
	for _, c := range []struct {
		name    string
		m       api.Model
		prompts [][]int32
		o       Options
		want    error
	}{
		{"empty prompt", m, [][]int32{{1}, {}}, o, api.ErrConfig},
		{"id past the vocabulary", m, [][]int32{{1, 50}}, o, api.ErrOutOfRange},
		{"negative id", m, [][]int32{{-1}}, o, api.ErrOutOfRange},
		{"EOS past the vocabulary", m, [][]int32{{1}}, Options{MaxTokens: 1, TopP: 1, RepetitionPenalty: 1, EOS: []int32{50}}, api.ErrOutOfRange},
		{"bad options", m, [][]int32{{1}}, bad, api.ErrConfig},
		{"no model", nil, [][]int32{{1}}, o, api.ErrConfig},
	} {
		if _, err := Generate(ctx, c.m, c.prompts, c.o, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if m.steps != 0 || len(m.prefill) != 0 {
		t.Errorf("the model ran on bad inputs")
	}
}

// TestRepetitionPenaltyHistory checks that the penalty looks at the prompt
// and at every token generated: with logits fixed at 1 for token 3 and 1.5
// for token 4 (0 elsewhere), penalty 2 and the prompt [4], greedy decoding
// gives 3 (4 is penalised to 0.75), then 4 (3 is penalised to 0.5), then 4
// again (each token is penalised once).
func TestRepetitionPenaltyHistory(t *testing.T) {
	m := newFake(6, func(_ []int32, row []float32) {
		clear(row)
		row[3], row[4] = 1, 1.5
	})
	o := DefaultOptions()
	o.MaxTokens, o.RepetitionPenalty = 4, 2
	if got := gen(t, m, [][]int32{{4}}, o)[0]; !slices.Equal(got, []int32{3, 4, 4, 4}) {
		t.Fatalf("got %v, want [3 4 4 4]", got)
	}
}

// TestContinueState checks Options.State: a state continued by a first
// Generate holds the prompt and every token sampled (the last one and an
// end-of-sequence token included), so that a second Generate with another
// prompt on it decodes what one Generate over everything does; a batch
// with a state is refused.
func TestContinueState(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t, 1)
	o := DefaultOptions()
	o.MaxTokens = 6
	first := gen(t, m, [][]int32{prompt7}, o)[0]
	for _, eos := range []bool{false, true} {
		o := o
		consumed := len(prompt7) + len(first)
		if eos {
			o.EOS = []int32{first[4]}
			consumed = len(prompt7) + slices.Index(first, first[4]) + 1
		}
		st, err := m.NewState(1)
		if err != nil {
			t.Fatal(err)
		}
		o.State = st
		out := gen(t, m, [][]int32{prompt7}, o)[0]
		if st.Len() != consumed {
			t.Fatalf("eos %v: the state consumed %d tokens, want %d", eos, st.Len(), consumed)
		}
		second := []int32{9, 8, 7}
		got := gen(t, m, [][]int32{second}, o)[0]
		whole := append(append(slices.Clone(prompt7), out...), second...)
		if eos {
			whole = append(append(append(slices.Clone(prompt7), out...), o.EOS[0]), second...)
		}
		o.State = nil
		if want := gen(t, m, [][]int32{whole}, o)[0]; !slices.Equal(got, want) {
			t.Fatalf("eos %v: continued %v, in one go %v", eos, got, want)
		}
	}
	st, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	o.State = st
	if _, err := Generate(ctx, m, [][]int32{prompt7, prompt7}, o, nil); !errors.Is(err, api.ErrConfig) {
		t.Fatalf("a batch with a state: %v, want ErrConfig", err)
	}
}
