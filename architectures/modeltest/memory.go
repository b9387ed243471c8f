package modeltest

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
)

// build builds the model of cfg with the architecture its ArchName names,
// its parameters drawn from seed, its weights stored in weights (F32 when
// none is given).
func build(t testing.TB, cfg api.Config, b api.Backend, seed int64, weights ...api.DType) api.LocalModel {
	t.Helper()
	a, err := api.LookupArchitecture(cfg.ArchName())
	if err != nil {
		t.Fatal(err)
	}
	opts := api.BuildOptions{On: b, Seed: seed}
	if len(weights) > 0 {
		opts.Weights = weights[0]
	}
	m, err := a.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("%s: %v", cfg.ArchName(), err)
	}
	lm, ok := m.(api.LocalModel)
	if !ok {
		t.Fatalf("%s built a %T, not a model of this process", cfg.ArchName(), m)
	}
	return lm
}

// DenseKnobs returns changes to a dense.Config that, applied one at a time
// to the defaults, cover each knob of the dense links: a linear projection,
// a linear gate, no gate, concatenation, no norm, and the first three
// together.
func DenseKnobs() []func(*dense.Config) {
	return []func(*dense.Config){
		func(d *dense.Config) { d.Projection = dense.ProjLinear },
		func(d *dense.Config) { d.Gate = dense.GateLinear },
		func(d *dense.Config) { d.Gate = dense.GateNone },
		func(d *dense.Config) { d.Fusion = dense.FuseConcat },
		func(d *dense.Config) { d.Norm = dense.NormNone },
		func(d *dense.Config) {
			d.Projection, d.Gate, d.Fusion = dense.ProjLinear, dense.GateLinear, dense.FuseConcat
		},
	}
}

// CheckParameterCounts validates each of cfgs, builds its model on b and
// checks its memory estimate's parameter count and weight bytes against
// the model's parameters (CheckParameterCount).
func CheckParameterCounts[C api.Config](t *testing.T, cfgs map[string]C, b api.Backend) {
	t.Helper()
	for name, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		est, ok := api.EstimateMemory(c)
		if !ok {
			t.Fatalf("%s: the config estimates no memory", name)
		}
		CheckParameterCount(t, name, build(t, c, b, 1), est)
	}
}

// CheckEstimateNonNegative fails t when a figure of e, or a total of it
// for batch sequences of tokens tokens (either may be out of range), is
// negative: the estimates saturate instead of overflowing.
func CheckEstimateNonNegative(t testing.TB, what string, e api.MemoryEstimate, batch, tokens int) {
	t.Helper()
	for _, v := range []int64{e.Parameters, e.WeightBytes, e.StateBytes,
		e.Forward.Fixed, e.Forward.PerSequence, e.Forward.PerToken, e.Forward.PerTokenPair,
		e.Train.Fixed, e.Train.PerSequence, e.Train.PerToken, e.Train.PerTokenPair,
		e.ForwardBytes(batch, tokens), e.TrainBytes(batch, tokens),
		e.InferenceBytes(batch, tokens), e.TrainingBytes(batch, tokens, 2)} {
		if v < 0 {
			t.Fatalf("%s: negative estimate for %d sequences of %d tokens: %+v", what, batch, tokens, e)
		}
	}
}

// CheckStepsAllocateNothing builds the model of each of cfgs on each of
// the backends, with F32, BF16 and Q8_0 weights, and checks that its decode steps of two sequences allocate
// nothing (CheckStepAllocs). Run it only without the race detector.
func CheckStepsAllocateNothing[C api.Config](t *testing.T, cfgs map[string]C, backends ...api.Backend) {
	t.Helper()
	for name, c := range cfgs {
		for _, b := range backends {
			for _, w := range []api.DType{api.F32, api.BF16, api.Q8_0} {
				CheckStepAllocs(t, fmt.Sprintf("%s, %s weights, %d threads", name, api.WeightName(w), b.Threads()), build(t, c, b, 1, w), 2)
			}
		}
	}
}

// CheckEstimatesBound builds the models of the named configurations of
// cfgs on b and checks that their memory estimates bound what Forward,
// Prefill, LossAndGrad and a State allocate for 2 sequences of 64 tokens,
// by at most 4 times (MeasureMemory, CheckTight).
func CheckEstimatesBound[C api.Config](t *testing.T, cfgs map[string]C, b api.Backend, names ...string) {
	t.Helper()
	for _, name := range names {
		c, ok := cfgs[name]
		if !ok {
			t.Fatalf("no configuration %q", name)
		}
		est, ok := api.EstimateMemory(c)
		if !ok {
			t.Fatalf("%s: the config estimates no memory", name)
		}
		MeasureMemory(t, build(t, c, b, 1), est, 2, 64).CheckTight(t, name, 4)
	}
}
