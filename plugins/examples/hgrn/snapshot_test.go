package hgrn

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestStateSnapshots: a state saved after a prefill and a step, loaded
// into a new state and copied (api.CopyState), continues as the original
// does, bit for bit; a snapshot of another batch, with a tensor missing
// or of another shape, or a state of another model, is refused
// (api.ErrShape) and leaves the state as it was.
func TestStateSnapshots(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m := newTiny(t, cfg, 3)
			ids := randomIDs(rand.New(rand.NewPCG(5, 6)), 2, 10, cfg.VocabSize)
			column := func(j int) []int32 { return []int32{ids[0][j], ids[1][j]} }
			s, err := m.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Prefill(ctx, s, [][]int32{ids[0][:4], ids[1][:4]}, api.Form{}); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Step(ctx, s, column(4)); err != nil {
				t.Fatal(err)
			}
			snap, err := m.SaveState(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Batch != 2 || snap.Tokens != 5 || len(snap.Tensors) != cfg.NumHiddenLayers || snap.Tensors[0].Name != "layers.0.state" {
				t.Fatalf("snapshot of %d sequences at %d tokens, %d tensors", snap.Batch, snap.Tokens, len(snap.Tensors))
			}
			loaded, err := m.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.LoadState(ctx, loaded, snap); err != nil {
				t.Fatal(err)
			}
			copied, err := api.CopyState(ctx, m, s)
			if err != nil {
				t.Fatal(err)
			}
			for j := 5; j < 10; j++ {
				var want []float32
				for i, st := range []api.State{s, loaded, copied} {
					out, err := m.Step(ctx, st, column(j))
					if err != nil {
						t.Fatal(err)
					}
					if got := slices.Clone(api.Float32s(out)); i == 0 {
						want = got
					} else if !slices.Equal(got, want) {
						t.Fatalf("token %d: state %d's logits differ from the original's", j, i)
					}
				}
			}
			if loaded.Len() != 10 {
				t.Errorf("the loaded state is at %d tokens, want 10", loaded.Len())
			}

			before, err := m.SaveState(ctx, loaded)
			if err != nil {
				t.Fatal(err)
			}
			wide, err := m.NewState(3)
			if err != nil {
				t.Fatal(err)
			}
			missing, reshaped := snap, snap
			missing.Tensors = snap.Tensors[1:]
			reshaped.Tensors = slices.Clone(snap.Tensors)
			reshaped.Tensors[0].Shape = api.Shape{1, 2 * cfg.HiddenSize}
			foreign, err := newTiny(t, cfg, 4).NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			for what, err := range map[string]error{
				"another batch":         m.LoadState(ctx, wide, snap),
				"a tensor missing":      m.LoadState(ctx, loaded, missing),
				"another shape":         m.LoadState(ctx, loaded, reshaped),
				"another model's state": m.LoadState(ctx, foreign, snap),
			} {
				if !errors.Is(err, api.ErrShape) {
					t.Errorf("%s: %v, want an error wrapping api.ErrShape", what, err)
				}
			}
			if _, err := m.SaveState(ctx, foreign); !errors.Is(err, api.ErrShape) {
				t.Errorf("saving another model's state: %v, want an error wrapping api.ErrShape", err)
			}
			after, err := m.SaveState(ctx, loaded)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := after.MaxDiff(before); err != nil || d != 0 {
				t.Errorf("refused loads changed the state (by %v, %v)", d, err)
			}
		})
	}
}
