package mamba

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/defaultmodel"
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
// once per thread count, its weight matrices stored in weights.
func benchModel(b *testing.B, threads int, weights api.DType) *Model {
	m, err := architecture{NameMamba}.New(b.Context(), mamba130m(),
		api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: threads}), Seed: 1, Weights: weights})
	if err != nil {
		b.Fatal(err)
	}
	return m.(*Model)
}

// BenchmarkPrefill reports prefill tokens/s of a 512-token sequence.
func BenchmarkPrefill(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run("130m/T=512/threads="+strconv.Itoa(threads), func(b *testing.B) {
			m := benchModel(b, threads, api.F32)
			ids := [][]int32{make([]int32, 512)}
			for i := range ids[0] {
				ids[0][i] = int32(i * 7 % m.cfg.VocabSize)
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Forward(ctx, ids, api.Form{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkDecode reports decode tokens/s (one sequence, one token a step)
// with the weight matrices in F32, BF16 and Q8_0.
func BenchmarkDecode(b *testing.B) {
	for _, w := range []api.DType{api.F32, api.BF16, api.Q8_0} {
		for _, threads := range []int{1, 2} {
			b.Run("130m/"+api.WeightName(w)+"/threads="+strconv.Itoa(threads), func(b *testing.B) {
				modeltest.BenchDecode(b, benchModel(b, threads, w))
			})
		}
	}
}

// BenchmarkTrainStep reports training tokens/s (loss, gradients and an SGD
// update) of the default model's shape: DenseMamba, width 192, 6 layers,
// vocabulary 4096, on a batch of 8 sequences of 256 tokens.
func BenchmarkTrainStep(b *testing.B) {
	c := DefaultConfig(NameDenseMamba)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.TimeStepRank = 4096, 192, 6, 0, 0
	c.fillDerived(true, true)
	m10 := DefaultConfig(NameMamba) // bench/configs/mamba-10m.json
	m10.VocabSize, m10.HiddenSize, m10.NumHiddenLayers, m10.IntermediateSize, m10.TimeStepRank = 16384, 256, 12, 0, 0
	m10.fillDerived(true, true)
	for _, s := range []struct {
		name     string
		cfg      *Config
		batch, t int
	}{{"default/8x256", c, 8, 256}, {"10m/8x128", m10, 8, 128}} {
		for _, threads := range []int{1, 2} {
			benchTrainStep(b, s.name+"/threads="+strconv.Itoa(threads), s.cfg, threads, s.batch, s.t, 1)
		}
	}
	// Packed rows: each of the 8 rows holds docs documents, the state reset
	// at each (api.Batch.Starts), against the plain rows above.
	for _, docs := range []int{2, 4} {
		for _, threads := range []int{1, 2} {
			benchTrainStep(b, "default/8x256/docs="+strconv.Itoa(docs)+"/threads="+strconv.Itoa(threads), c, threads, 8, 256, docs)
		}
	}
}

// benchTrainStep times training steps of cfg on batch sequences of t
// tokens at the given thread count, each row cut into docs documents of
// equal length.
func benchTrainStep(b *testing.B, name string, cfg *Config, threads, batchSize, t, docs int) {
	c := cfg
	{
		b.Run(name, func(b *testing.B) {
			be := cpu.New(api.BackendOptions{Threads: threads})
			m, err := New(c, be, 1)
			if err != nil {
				b.Fatal(err)
			}
			batch := api.Batch{}
			for r := range batchSize {
				in, tg := make([]int32, t), make([]int32, t)
				for i := range in {
					in[i], tg[i] = int32((r*257+i*31)%c.VocabSize), int32((r*263+i*37)%c.VocabSize)
				}
				batch.Inputs, batch.Targets = append(batch.Inputs, in), append(batch.Targets, tg)
				if docs > 1 {
					var starts []int
					for d := 1; d < docs; d++ {
						starts = append(starts, d*t/docs)
					}
					batch.Starts = append(batch.Starts, starts)
				}
			}
			params, grads := m.Parameters(), m.Grads()
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				m.ZeroGrad()
				if _, err := m.LossAndGrad(ctx, batch); err != nil {
					b.Fatal(err)
				}
				for i, g := range grads {
					be.Affine(g.Value, g.Value, -1e-3, 0)
					be.Binary(api.OpAdd, params[i].Value, params[i].Value, g.Value)
				}
			}
			b.ReportMetric(float64(batchSize*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkLoadModelBytes times checkpoint.LoadModelBytes on the CPU
// backend: the default model (a bfloat16 DenseMamba of 2.3M parameters)
// and a random mamba-130m-shaped model stored in bfloat16 and in float16,
// widened to the parameters' float32 as they load.
func BenchmarkLoadModelBytes(b *testing.B) {
	opts := checkpoint.LoadOptions{Build: api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 2})}}
	b.Run("default-model", func(b *testing.B) {
		if _, err := defaultmodel.Config(); err != nil {
			b.Skip(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := defaultmodel.Load(b.Context(), opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	m := benchModel(b, 2, api.F32)
	for _, storage := range []api.DType{api.BF16, api.F16} {
		b.Run("130m/"+storage.String(), func(b *testing.B) {
			dir := b.TempDir()
			if err := checkpoint.SaveModelAs(b.Context(), dir, m, storage); err != nil {
				b.Fatal(err)
			}
			cfgJSON, err := os.ReadFile(filepath.Join(dir, checkpoint.ConfigFileName))
			if err != nil {
				b.Fatal(err)
			}
			weights, err := os.ReadFile(filepath.Join(dir, checkpoint.SingleFileName))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(weights)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := checkpoint.LoadModelBytes(b.Context(), "130m", cfgJSON, weights, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
