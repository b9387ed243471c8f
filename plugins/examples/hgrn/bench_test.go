package hgrn

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// BenchmarkLossAndGrad times one LossAndGrad of the default shape (4
// layers of width 128, dense_m 2) with a vocabulary of 8192 on 8 sequences
// of 256 tokens.
func BenchmarkLossAndGrad(b *testing.B) {
	cfg := DefaultConfig()
	cfg.VocabSize = 8192
	m, err := New(cfg, cpu.New(api.BackendOptions{}), 1)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	batch := api.Batch{Inputs: randomIDs(r, 8, 256, cfg.VocabSize), Targets: randomIDs(r, 8, 256, cfg.VocabSize)}
	ctx := context.Background()
	for b.Loop() {
		m.ZeroGrad()
		if _, err := m.LossAndGrad(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStep times one decode Step of the default shape with a
// vocabulary of 8192 for one sequence.
func BenchmarkStep(b *testing.B) {
	cfg := DefaultConfig()
	cfg.VocabSize = 8192
	m, err := New(cfg, cpu.New(api.BackendOptions{}), 1)
	if err != nil {
		b.Fatal(err)
	}
	s, err := m.NewState(1)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ids := []int32{5}
	for b.Loop() {
		if _, err := m.Step(ctx, s, ids); err != nil {
			b.Fatal(err)
		}
	}
}
