package generate

import (
	"context"
	"os"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// BenchmarkPrefixCacheTTFT measures the time to the first token's logits
// of a 4096-token prompt through a PrefixCache (a snapshot every 256
// tokens): cold (an empty cache, which also saves the prompt's 16 states)
// and warm (the same prompt again: one token runs). The model is
// bench/configs/mamba-130m.json with random weights, at one thread:
//
//	go test ./generate -run '^$' -bench PrefixCacheTTFT -benchtime 3x
func BenchmarkPrefixCacheTTFT(b *testing.B) {
	ctx := context.Background()
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile("../bench/configs/mamba-130m.json")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := arch.ParseConfig(data)
	if err != nil {
		b.Fatal(err)
	}
	m, err := arch.New(ctx, cfg, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 1}), Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	prompt := make([]int32, 4096)
	for i := range prompt {
		prompt[i] = int32((i * 7919) % cfg.Vocab())
	}
	o := CacheOptions{Every: 256, MemoryBytes: 1 << 30}
	first := func(c *PrefixCache) {
		st, t, err := c.prefill(ctx, prompt)
		if err != nil {
			b.Fatal(err)
		}
		t.Backend().Free(t)
		st.Close()
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c, err := NewPrefixCache(ctx, m, o)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			first(c)
		}
	})
	c, err := NewPrefixCache(ctx, m, o)
	if err != nil {
		b.Fatal(err)
	}
	first(c)
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			first(c)
		}
	})
	b.Run("no cache", func(b *testing.B) {
		for b.Loop() {
			st, err := m.NewState(1)
			if err != nil {
				b.Fatal(err)
			}
			t, err := PrefillLast(ctx, m, st, [][]int32{prompt})
			if err != nil {
				b.Fatal(err)
			}
			t.Backend().Free(t)
		}
	})
}
