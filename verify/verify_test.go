package verify

import (
	"context"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/architectures/retnet"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyModels returns a small model of every built-in architecture.
func tinyModels(t *testing.T) map[string]api.Model {
	t.Helper()
	b := cpu.New(api.BackendOptions{Threads: 2})
	out := map[string]api.Model{}
	for _, arch := range []string{mamba.NameMamba, mamba.NameDenseMamba} {
		c := mamba.DefaultConfig(arch)
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize = 97, 32, 3, 8
		c.IntermediateSize, c.TimeStepRank = 64, 4
		m, err := mamba.New(c, b, 1)
		if err != nil {
			t.Fatal(err)
		}
		out[arch] = m
	}
	for _, arch := range []string{retnet.NameRetNet, retnet.NameDenseRetNet} {
		c := retnet.DefaultConfig(arch)
		c.VocabSize, c.NumHiddenLayers = 97, 2
		if arch == retnet.NameRetNet {
			c.HiddenSize, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim, c.FFNDim = 32, 2, 32, 64, 64
		} else {
			c.HiddenSize, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim = 32, 2, 16, 64
		}
		m, err := retnet.New(c, b, 1)
		if err != nil {
			t.Fatal(err)
		}
		out[arch] = m
	}
	return out
}

// TestBuiltinModelsPass runs every check on a small model of each
// architecture: all pass, none is skipped but where the model has no
// chunkwise form.
func TestBuiltinModelsPass(t *testing.T) {
	for arch, m := range tinyModels(t) {
		t.Run(arch, func(t *testing.T) {
			r, err := Run(context.Background(), m, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Checks) != 8 {
				t.Fatalf("%d checks, want 8", len(r.Checks))
			}
			for _, c := range r.Checks {
				t.Logf("%-30s diff %.3g of %.3g, state diff %.3g, pass %v %s", c.Name, c.MaxDiff, c.Scale, c.StateDiff, c.Pass, c.Skipped)
				if !c.Pass {
					t.Errorf("%s failed: %.3g of %.3g", c.Name, c.MaxDiff, c.Scale)
				}
				if c.Skipped != "" && !strings.HasPrefix(c.Name, "chunkwise") {
					t.Errorf("%s skipped: %s", c.Name, c.Skipped)
				}
			}
		})
	}
}

// forgetful is a model whose states lose part of themselves: every
// Step resets the state first once it has consumed resetAt tokens
// (a state that drops what it carries), or its snapshots lose their
// first tensor's values (a snapshot that drops one layer's conv window).
type forgetful struct {
	api.StateSaver
	resetAt  int
	dropSnap bool
}

func (f forgetful) Step(ctx context.Context, s api.State, ids []int32) (api.Tensor, error) {
	if f.resetAt > 0 && s.Len() == f.resetAt {
		if err := s.Reset(); err != nil {
			return nil, err
		}
	}
	return f.StateSaver.Step(ctx, s, ids)
}

func (f forgetful) SaveState(ctx context.Context, s api.State) (api.StateSnapshot, error) {
	snap, err := f.StateSaver.SaveState(ctx, s)
	if f.dropSnap && err == nil {
		clear(snap.Tensors[0].Data)
	}
	return snap, err
}

// TestBrokenModelsFail checks that a state that forgets, and a snapshot
// that drops a layer's convolution window, fail the checks that see them.
func TestBrokenModelsFail(t *testing.T) {
	m := tinyModels(t)[mamba.NameMamba].(api.StateSaver)
	for _, tc := range []struct {
		name  string
		model forgetful
		fail  []string
	}{
		{"state reset at token 20", forgetful{StateSaver: m, resetAt: 20}, []string{"recurrent"}},
		{"snapshot without its first tensor", forgetful{StateSaver: m, dropSnap: true}, []string{"snapshot, restore, continue"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Run(context.Background(), tc.model, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkFailed(t, r, tc.fail...)
		})
	}
	lm := tinyModels(t)[mamba.NameDenseMamba].(api.Trainable)
	for _, tc := range []struct {
		name  string
		model leaky
		fail  string
	}{
		{"padding runs with the sequences", leaky{Trainable: lm, pads: true}, "variable lengths"},
		{"padding enters the state", leaky{Trainable: lm, pads: true}, "prefill of different lengths, step"},
		{"document starts dropped", leaky{Trainable: lm, joins: true}, "packed documents (loss)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Run(context.Background(), tc.model, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkFailed(t, r, tc.fail)
		})
	}
}

// checkFailed fails t unless every check named is among r's failures.
func checkFailed(t *testing.T, r Report, names ...string) {
	t.Helper()
	failed := map[string]bool{}
	for _, c := range r.Failed() {
		failed[c.Name] = true
	}
	for _, name := range names {
		if !failed[name] {
			t.Errorf("%q passed on a broken model (failed: %v)", name, failed)
		}
	}
}

// leaky is a model that gets variable-length and packed batches wrong the
// way padded batches do: pads runs sequences of different lengths as rows
// padded with id 0 (the padding's logits are not zero, and the padding
// enters the states of a Prefill), joins drops a
// batch's document starts (one document's state runs into the next).
type leaky struct {
	api.Trainable
	pads, joins bool
}

func (l leaky) Forward(ctx context.Context, ids [][]int32, f api.Form) (api.Tensor, error) {
	if lay, err := api.LayoutOf(ids); l.pads && err == nil {
		ids = lay.Padded(ids, 0)
	}
	return l.Trainable.Forward(ctx, ids, f)
}

func (l leaky) Prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error) {
	if lay, err := api.LayoutOf(ids); l.pads && err == nil {
		ids = lay.Padded(ids, 0)
	}
	return l.Trainable.Prefill(ctx, s, ids, f)
}

func (l leaky) LossAndGrad(ctx context.Context, b api.Batch) (float64, error) {
	if l.joins {
		b.Starts = nil
	}
	return l.Trainable.LossAndGrad(ctx, b)
}

// TestDrift checks Drift: a model against itself does not drift, the
// same weights in q8 drift a little and pass, a model of other weights
// fails.
func TestDrift(t *testing.T) {
	ctx := context.Background()
	arch, err := api.LookupArchitecture(mamba.NameMamba)
	if err != nil {
		t.Fatal(err)
	}
	c := mamba.DefaultConfig(mamba.NameMamba)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.StateSize = 96, 64, 2, 128, 8
	build := func(seed int64, w api.DType) api.Model {
		m, err := arch.New(ctx, c, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 1}), Seed: seed, Weights: w})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ref := build(1, api.F32)
	o := DefaultOptions()
	o.Tokens = 64
	for _, tc := range []struct {
		name string
		low  api.Model
		pass bool
		zero bool
	}{
		{"itself", build(1, api.F32), true, true},
		{"q8", build(1, api.Q8_0), true, false},
		{"other weights", build(2, api.F32), false, false},
	} {
		got, err := Drift(ctx, ref, tc.low, tc.name, o, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.3g of %.3g, state %.3g", tc.name, got.MaxDiff, got.Scale, got.StateDiff)
		if got.Pass != tc.pass || (got.MaxDiff == 0) != tc.zero || got.StateDiff < 0 {
			t.Errorf("%s: pass %v, difference %v, state difference %v", tc.name, got.Pass, got.MaxDiff, got.StateDiff)
		}
	}
}
