package cuda

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// The benchmarks of scripts/gpu-check.sh: each runs on the GPU and on the
// CPU backend side by side, and is skipped where there is no GPU.

// benchBackends returns the CPU backend and the GPU's, named.
func benchBackends(b *testing.B) []struct {
	name string
	be   api.Backend
	sync func()
} {
	dev := newDevice(b)
	return []struct {
		name string
		be   api.Backend
		sync func()
	}{
		{"cpu", cpu.New(api.BackendOptions{}), func() {}},
		{"cuda", dev, dev.Sync},
	}
}

// BenchmarkGEMM times MatMul of square float32 matrices (x W^T, as the
// models' linear layers), reporting GFLOP/s.
func BenchmarkGEMM(b *testing.B) {
	for _, bk := range benchBackends(b) {
		for _, n := range []int{256, 1024, 2048} {
			b.Run(fmt.Sprintf("%s/n=%d", bk.name, n), func(b *testing.B) {
				x, w, y := bk.be.Alloc(api.F32, n, n), bk.be.Alloc(api.F32, n, n), bk.be.Alloc(api.F32, n, n)
				bk.be.Fill(x, 0.5)
				bk.be.Fill(w, 0.25)
				bk.be.MatMul(y, x, w, false, true, 1, 0)
				bk.sync()
				b.ResetTimer()
				for b.Loop() {
					bk.be.MatMul(y, x, w, false, true, 1, 0)
				}
				bk.sync()
				b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkDecode times one decode step (Model.Step, logits downloaded to
// the host) of a mid-sized Mamba and RetNet, reporting tokens/s.
func BenchmarkDecode(b *testing.B) {
	configs := map[string]string{
		"mamba":  `{"vocab_size": 8192, "hidden_size": 768, "num_hidden_layers": 12, "state_size": 16}`,
		"retnet": `{"vocab_size": 8192, "decoder_embed_dim": 768, "decoder_retention_heads": 8, "decoder_ffn_embed_dim": 1536, "decoder_layers": 12, "activation_fn": "swish"}`,
	}
	for _, bk := range benchBackends(b) {
		for _, name := range []string{"mamba", "retnet"} {
			b.Run(bk.name+"/"+name, func(b *testing.B) {
				arch, err := api.LookupArchitecture(name)
				if err != nil {
					b.Fatal(err)
				}
				cfg, err := arch.ParseConfig([]byte(configs[name]))
				if err != nil {
					b.Fatal(err)
				}
				m, err := arch.New(b.Context(), cfg, api.BuildOptions{On: bk.be, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				s, err := m.NewState(1)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				tok := []int32{1}
				b.ResetTimer()
				for b.Loop() {
					logits, err := m.Step(b.Context(), s, tok)
					if err != nil {
						b.Fatal(err)
					}
					api.Float32s(logits)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}
