package retnet

import (
	"context"
	"strconv"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// denseRetNet350M is the shape of the official DenseRetNet-350M: d 1536,
// 16 layers, 2 heads, d_qk 768, e = 2d, m 2 (as published), selector
// ratios 8 and 32, LLaMA vocabulary plus [PAD].
func denseRetNet350M() *Config {
	c := DefaultConfig(NameDenseRetNet)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = 32001, 1536, 16, 2
	c.QueryKeyDim, c.ValueDim = 768, 3072
	c.Dense.GateRatio, c.DenseVGateRatio = 8, 32
	return c
}

// benchModel builds the DenseRetNet-350M shape on threads with its weight
// matrices stored in weights.
func benchModel(b *testing.B, threads int, weights api.DType) *Model {
	m, err := architecture{NameDenseRetNet}.New(b.Context(), denseRetNet350M(),
		api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: threads}), Seed: 1, Weights: weights})
	if err != nil {
		b.Fatal(err)
	}
	return m.(*Model)
}

// BenchmarkPrefill reports prefill tokens/s of a 512-token sequence in the
// parallel form and the chunkwise form (chunks of 64).
func BenchmarkPrefill(b *testing.B) {
	for _, threads := range []int{1, 2} {
		m := (*Model)(nil)
		ids := [][]int32{make([]int32, 512)}
		for i := range ids[0] {
			ids[0][i] = int32(i * 13 % 32001)
		}
		ctx := context.Background()
		for _, form := range []string{"parallel", "chunkwise"} {
			b.Run("350M/"+form+"/T=512/threads="+strconv.Itoa(threads), func(b *testing.B) {
				if m == nil {
					m = benchModel(b, threads, api.F32)
				}
				b.ResetTimer()
				for b.Loop() {
					var err error
					if form == "parallel" {
						_, err = m.Forward(ctx, ids, api.Form{})
					} else {
						_, err = m.ForwardChunkwise(ctx, ids, 64)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkDecode reports decode tokens/s (one sequence, one token a step)
// with the weight matrices in F32, BF16 and Q8_0.
func BenchmarkDecode(b *testing.B) {
	for _, w := range []api.DType{api.F32, api.BF16, api.Q8_0} {
		for _, threads := range []int{1, 2} {
			b.Run("350M/"+api.WeightName(w)+"/threads="+strconv.Itoa(threads), func(b *testing.B) {
				modeltest.BenchDecode(b, benchModel(b, threads, w))
			})
		}
	}
}
