package mamba

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyConfig is a small model with odd sizes; arch and target select the
// variant.
func tinyConfig(arch, target string) *Config {
	c := DefaultConfig(arch)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize = 104, 40, 3, 6
	c.IntermediateSize, c.TimeStepRank = 0, 0
	c.fillDerived()
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

func randomIDs(r *rand.Rand, batch, T, vocab int) [][]int32 {
	ids := make([][]int32, batch)
	for b := range ids {
		for range T {
			ids[b] = append(ids[b], int32(r.IntN(vocab)))
		}
	}
	return ids
}

// relErr is max |got-want| / max |want|.
func relErr(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i]-want[i])))
		s = max(s, math.Abs(float64(want[i])))
	}
	return d / s
}

// TestFormsAgree checks, for each variant, that recurrent Steps over 64
// tokens and a prefill of 40 tokens followed by 24 Steps give the parallel
// form's logits to 1e-5 relative.
func TestFormsAgree(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 2})
			m, err := New(cfg, b, 7)
			if err != nil {
				t.Fatal(err)
			}
			const B, T, split = 2, 64, 40
			ids := randomIDs(rand.New(rand.NewPCG(1, 2)), B, T, cfg.VocabSize)
			par, err := m.Forward(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			want := api.Float32s(par) // [B,T,V]
			V := cfg.VocabSize
			wantAt := func(bi, ti int) []float32 { return want[(bi*T+ti)*V : (bi*T+ti+1)*V] }

			check := func(what string, s api.State, from int) {
				for ti := from; ti < T; ti++ {
					step := make([]int32, B)
					for bi := range B {
						step[bi] = ids[bi][ti]
					}
					logits, err := m.Step(ctx, s, step)
					if err != nil {
						t.Fatal(err)
					}
					got := api.Float32s(logits)
					for bi := range B {
						if e := relErr(got[bi*V:(bi+1)*V], wantAt(bi, ti)); e > 1e-5 {
							t.Fatalf("%s: token %d of sequence %d: relative error %.3g", what, ti, bi, e)
						}
					}
				}
			}
			s, _ := m.NewState(B)
			check("recurrent", s, 0)

			s2, _ := m.NewState(B)
			head := make([][]int32, B)
			for bi := range B {
				head[bi] = ids[bi][:split]
			}
			pre, err := m.Prefill(ctx, s2, head)
			if err != nil {
				t.Fatal(err)
			}
			got := api.Float32s(pre)
			for bi := range B {
				for ti := range split {
					if e := relErr(got[(bi*split+ti)*V:(bi*split+ti+1)*V], wantAt(bi, ti)); e > 1e-5 {
						t.Fatalf("prefill: token %d: relative error %.3g", ti, e)
					}
				}
			}
			check("prefill+steps", s2, split)
			if s2.Len() != T {
				t.Errorf("state length %d, want %d", s2.Len(), T)
			}
		})
	}
}
