package retnet

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestPassesFreeIntermediates checks, for each variant, that the parallel
// and chunkwise forms of Forward, Prefill, PrefillLast and ForwardInto
// free each layer's intermediates as they go and everything but their
// results by the end, and that LossAndGrad frees its activations
// (modeltest.CheckRecycles).
func TestPassesFreeIntermediates(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			cfg.NumHiddenLayers = 6 // each layer a small share of a pass
			b := cpu.New(api.BackendOptions{Threads: 2})
			m := newTestModel(t, cfg, b, 3)
			const B, T = 2, 128
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(3, 4)), B, T, cfg.VocabSize)
			must := func(x api.Tensor, err error) ([]float32, api.Tensor) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return api.Float32s(x), x
			}
			chunk := api.Form{Mode: api.Chunkwise, Chunk: 32}
			modeltest.CheckRecycles(t, "Forward", 0.5, func() ([]float32, api.Tensor) { return must(m.Forward(ctx, ids, api.Form{})) })
			modeltest.CheckRecycles(t, "Forward chunkwise", 0.5, func() ([]float32, api.Tensor) { return must(m.Forward(ctx, ids, chunk)) })
			s, err := m.NewState(B)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRecycles(t, "Prefill", 0.5, func() ([]float32, api.Tensor) {
				s.Reset()
				return must(m.Prefill(ctx, s, ids, chunk))
			})
			modeltest.CheckRecycles(t, "PrefillLast", 0.5, func() ([]float32, api.Tensor) {
				s.Reset()
				return must(m.PrefillLast(ctx, s, ids, chunk))
			})
			dst := b.Alloc(api.F32, B, T, cfg.VocabSize)
			modeltest.CheckRecycles(t, "ForwardInto", 0.5, func() ([]float32, api.Tensor) {
				if err := m.ForwardInto(ctx, dst, ids); err != nil {
					t.Fatal(err)
				}
				return api.Float32s(dst), nil
			})
			batch := api.Batch{Inputs: ids, Targets: modeltest.RandomIDs(rand.New(rand.NewPCG(5, 6)), B, T, cfg.VocabSize)}
			modeltest.CheckRecycles(t, "LossAndGrad", 0, func() ([]float32, api.Tensor) {
				m.ZeroGrad()
				if _, err := m.LossAndGrad(ctx, batch); err != nil {
					t.Fatal(err)
				}
				return api.Float32s(m.norm.Weight.Grad()), nil
			})
		})
	}
}

// TestPrefillLast checks PrefillLast against Prefill in every form
// (modeltest.CheckPrefillLast).
func TestPrefillLast(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(t, cfg, cpu.New(api.BackendOptions{Threads: 2}), 5)
			const B, T = 2, 37
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(7, 8)), B, T+1, cfg.VocabSize)
			prompt, next := make([][]int32, B), make([]int32, B)
			for b := range ids {
				prompt[b], next[b] = ids[b][:T], ids[b][T]
			}
			modeltest.CheckPrefillLast(t, m, prompt, next, []api.Form{{}, {Mode: api.Chunkwise}, {Mode: api.Chunkwise, Chunk: 10}, {Mode: api.Recurrent}}, 1e-5)
		})
	}
}
