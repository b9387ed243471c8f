package mamba

import (
	"context"
	"strconv"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// mamba130m is the shape of state-spaces/mamba-130m: 24 layers, width 768,
// the GPT-NeoX vocabulary padded to 50280 (129,135,360 parameters).
func mamba130m() *Config {
	c := DefaultConfig(NameMamba)
	c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.TimeStepRank = 768, 24, 0, 0
	c.fillDerived(true, true)
	return c
}

// benchModel builds a random mamba-130m-shaped model for the benchmarks,
// once per thread count.
func benchModel(b *testing.B, threads int) *Model {
	m, err := New(mamba130m(), cpu.New(api.BackendOptions{Threads: threads}), 1)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPrefill reports prefill tokens/s of a 512-token sequence.
func BenchmarkPrefill(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run("130m/T=512/threads="+strconv.Itoa(threads), func(b *testing.B) {
			m := benchModel(b, threads)
			ids := [][]int32{make([]int32, 512)}
			for i := range ids[0] {
				ids[0][i] = int32(i * 7 % m.cfg.VocabSize)
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Forward(ctx, ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkDecode reports decode tokens/s (one sequence, one token a step).
func BenchmarkDecode(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run("130m/threads="+strconv.Itoa(threads), func(b *testing.B) {
			m := benchModel(b, threads)
			ctx := context.Background()
			s, _ := m.NewState(1)
			ids := []int32{17}
			if _, err := m.Step(ctx, s, ids); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Step(ctx, s, ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
