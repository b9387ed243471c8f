package generate

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

func randomPrompt(seed uint64, n int) []int32 {
	r := rand.New(rand.NewPCG(seed, 7))
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(r.IntN(tinyVocab))
	}
	return p
}

// TestPrefixCache checks that a prompt seen before re-runs only its last
// token, that one sharing a prefix re-runs at most Every tokens past the
// longest shared multiple of Every, that both decode what they decoded
// from a cold cache (and what decoding without a cache gives), and that a
// new cache on the same directory finds the states on disk.
func TestPrefixCache(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t, 2)
	o := DefaultOptions()
	o.MaxTokens = 8
	cacheOpts := CacheOptions{Every: 8, MemoryBytes: 1 << 30, Dir: t.TempDir()}
	c, err := NewPrefixCache(ctx, m, cacheOpts)
	if err != nil {
		t.Fatal(err)
	}
	p1 := randomPrompt(1, 40)
	p2 := append(slices.Clone(p1[:30]), randomPrompt(2, 20)...)
	plain := map[string][]int32{"p1": gen(t, m, [][]int32{p1}, o)[0], "p2": gen(t, m, [][]int32{p2}, o)[0]}
	withCache := func(c *PrefixCache, p []int32) []int32 {
		t.Helper()
		o := o
		o.Cache = c
		return gen(t, m, [][]int32{p}, o)[0]
	}
	cold := withCache(c, p1)
	if s := c.Stats(); s.Hits != 0 || s.TokensRun != 40 || s.Saved != 5 { // at 8, 16, 24, 32 and 39
		t.Fatalf("cold: %+v", s)
	}
	if !slices.Equal(cold, plain["p1"]) {
		t.Fatalf("through the cache %v, without %v", cold, plain["p1"])
	}
	if warm := withCache(c, p1); !slices.Equal(warm, cold) {
		t.Fatalf("the same prompt again: %v, first %v", warm, cold)
	}
	if s := c.Stats(); s.Hits != 1 || s.TokensReused != 39 || s.TokensRun != 41 {
		t.Fatalf("warm: %+v", s)
	}
	shared := withCache(c, p2) // shares 30 tokens: resumes at 24
	if s := c.Stats(); s.Hits != 2 || s.TokensReused != 39+24 || s.TokensRun != 41+26 {
		t.Fatalf("shared prefix: %+v", s)
	}
	if !slices.Equal(shared, plain["p2"]) {
		t.Fatalf("shared prefix through the cache %v, without %v", shared, plain["p2"])
	}

	// A new cache (another process) on the same directory.
	c2, err := NewPrefixCache(ctx, m, cacheOpts)
	if err != nil {
		t.Fatal(err)
	}
	if again := withCache(c2, p1); !slices.Equal(again, cold) {
		t.Fatalf("from disk: %v, first %v", again, cold)
	}
	if s := c2.Stats(); s.Hits != 1 || s.TokensRun != 1 {
		t.Fatalf("from disk: %+v", s)
	}

	// A cache with another Every on the same directory finds the states
	// of the prefixes of the same lengths (here all but the last token),
	// and one given the identity does not read the weights.
	c3, err := NewPrefixCache(ctx, m, CacheOptions{Every: 16, MemoryBytes: 1 << 30, Dir: cacheOpts.Dir, Identity: c.id})
	if err != nil {
		t.Fatal(err)
	}
	if again := withCache(c3, p1); !slices.Equal(again, cold) {
		t.Fatalf("another Every: %v, first %v", again, cold)
	}
	if s := c3.Stats(); s.Hits != 1 || s.TokensRun != 1 {
		t.Fatalf("another Every: %+v", s)
	}

	// Another model's cache, or with a state, or a batch: refused.
	o.Cache = c
	for name, run := range map[string]func() error{
		"another model": func() error { _, err := Generate(ctx, tinyMamba(t, 3), [][]int32{p1}, o, nil); return err },
		"a batch":       func() error { _, err := Generate(ctx, m, [][]int32{p1, p1}, o, nil); return err },
		"and a state": func() error {
			o := o
			o.State = must(m.NewState(1))
			_, err := Generate(ctx, m, [][]int32{p1}, o, nil)
			return err
		},
	} {
		if err := run(); !errors.Is(err, api.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// TestPrefixCacheBounds checks the memory and disk bounds: the least
// recently used snapshots go first, and a damaged file is a miss.
func TestPrefixCacheBounds(t *testing.T) {
	ctx := context.Background()
	m := tinyMamba(t, 4)
	probe, err := NewPrefixCache(ctx, m, CacheOptions{Every: 4, MemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := probe.prefill(ctx, randomPrompt(9, 5))
	if err != nil {
		t.Fatal(err)
	}
	snap := must(api.Snapshot(ctx, m, st, probe.id))
	one := snap.Bytes()
	sized := t.TempDir() + "/one"
	if err := checkpoint.WriteState(ctx, sized, snap); err != nil {
		t.Fatal(err)
	}
	file := must(os.Stat(sized)).Size() // the cache's files differ only in their hashes

	dir := t.TempDir()
	c, err := NewPrefixCache(ctx, m, CacheOptions{Every: 4, MemoryBytes: 3 * one, Dir: dir, DiskBytes: 5*file + 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.prefill(ctx, randomPrompt(10, 33)); err != nil { // 8 snapshots
		t.Fatal(err)
	}
	if len(c.at) != 3 || c.n != 3*one {
		t.Fatalf("%d snapshots (%d bytes) in memory, want 3 (%d)", len(c.at), c.n, 3*one)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Fatalf("%d files in the directory, want 5", len(entries))
	}
	for _, e := range entries {
		if err := os.WriteFile(dir+"/"+e.Name(), []byte("damaged"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fresh, err := NewPrefixCache(ctx, m, CacheOptions{Every: 4, MemoryBytes: 1 << 30, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fresh.prefill(ctx, randomPrompt(10, 33)); err != nil {
		t.Fatal(err)
	}
	if s := fresh.Stats(); s.Hits != 0 || s.TokensRun != 33 {
		t.Fatalf("damaged files: %+v", s)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
