package mamba

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyConfig is a small model with odd sizes; arch and target select the
// variant.
func tinyConfig(arch, target string) *Config {
	c := DefaultConfig(arch)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize = 104, 40, 3, 6
	c.IntermediateSize, c.TimeStepRank = 0, 0
	c.fillDerived(true, true)
	c.TimeStepRank = 5
	c.TieWordEmbeddings = arch == NameMamba
	if arch == NameDenseMamba {
		c.Dense = dense.Defaults(2)
		c.Dense.GateRatio = 8
		c.DenseTarget = target
		if target == TargetH {
			c.Dense.Norm = dense.NormNone
		}
	}
	return c
}

func variants() map[string]*Config {
	return map[string]*Config{
		"mamba":        tinyConfig(NameMamba, ""),
		"densemamba-x": tinyConfig(NameDenseMamba, TargetX),
		"densemamba-h": tinyConfig(NameDenseMamba, TargetH),
	}
}

// TestFormsAgree checks, for each variant, that recurrent Steps over 64
// tokens and a prefill of 40 tokens followed by 24 Steps give the parallel
// form's logits to 1e-5 relative.
func TestFormsAgree(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), 7)
			if err != nil {
				t.Fatal(err)
			}
			const B, T, split = 2, 64, 40
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(1, 2)), B, T, cfg.VocabSize)
			par, err := m.Forward(ctx, ids, api.Form{})
			if err != nil {
				t.Fatal(err)
			}
			l := &modeltest.Logits{Want: api.Float32s(par), B: B, T: T, V: cfg.VocabSize, Tol: 1e-5}
			modeltest.CheckRecurrentForms(t, m, ids, split, l)
			modeltest.CheckForwardInto(t, m, ids, l.Want)
			t.Logf("largest relative difference from the parallel form: %.3g", l.Worst)
		})
	}
}
