package checkpoint_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// BenchmarkStateSnapshot measures, for the bench configurations (random
// weights, one thread, a state of one sequence), the model's identity
// (api.Identity: the weights' SHA-256), a snapshot (api.Snapshot), writing
// it as a state file (checkpoint.WriteState) and reading it back into a new
// state (checkpoint.ReadState, api.Restore); b.SetBytes is the snapshot's
// size, so MB/s reports it too (docs/state.md):
//
//	go test ./checkpoint -run '^$' -bench StateSnapshot -benchtime 5x
func BenchmarkStateSnapshot(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct{ arch, config string }{
		{"densemamba", "default-model.json"},
		{"mamba", "mamba-130m.json"},
		{"denseretnet", "denseretnet-350m.json"},
	} {
		arch, err := api.LookupArchitecture(c.arch)
		if err != nil {
			b.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join("..", "bench", "configs", c.config))
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
		st, err := m.NewState(1)
		if err != nil {
			b.Fatal(err)
		}
		id, err := api.Identity(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		snap, err := api.Snapshot(ctx, m, st, id)
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), "state.safetensors")
		run := func(name string, fn func() error) {
			b.Run(c.config+"/"+name, func(b *testing.B) {
				b.SetBytes(snap.Bytes())
				for b.Loop() {
					if err := fn(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		run("identity", func() error { _, err := api.Identity(ctx, m); return err })
		run("snapshot", func() error { _, err := api.Snapshot(ctx, m, st, id); return err })
		run("write", func() error { return checkpoint.WriteState(ctx, path, snap) })
		run("read+restore", func() error {
			r, err := checkpoint.ReadState(path)
			if err != nil {
				return err
			}
			s, err := api.Restore(ctx, m, r, id)
			if err == nil {
				s.Close()
			}
			return err
		})
	}
}
