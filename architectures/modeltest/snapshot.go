package modeltest

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// CheckStateSnapshots checks m's state snapshots (api.StateSaver) on
// ids [B][T] (T >= 4): a state that has consumed the first half of ids
// through Prefill and one Step, saved (api.Snapshot), written to a state
// file and read back, and restored into a new state, continues through the
// other tokens with the original's logits bit for bit, one Step at a time;
// a copy (api.CopyState) fed other tokens leaves the original as it was;
// Len follows the snapshot. It also checks the refusals: a snapshot of
// another architecture, configuration or weights (api.ErrConfig), of
// another batch, with a tensor missing or of another shape (api.ErrShape),
// and one whose batch count disagrees with its tensors (api.ErrCorrupt,
// before a state of that batch is allocated).
// other is a model of m's architecture with other weights.
func CheckStateSnapshots(t *testing.T, m, other api.Model, ids [][]int32) {
	t.Helper()
	ctx := context.Background()
	B, T := len(ids), len(ids[0])
	half := T / 2
	column := func(s [][]int32, j int) []int32 {
		out := make([]int32, len(s))
		for i, r := range s {
			out[i] = r[j]
		}
		return out
	}
	prefix := make([][]int32, B)
	for i, r := range ids {
		prefix[i] = r[:half-1]
	}
	orig, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prefill(ctx, orig, prefix, api.Form{}); err != nil {
		t.Fatal(err)
	}
	step := func(s api.State, tok []int32) []float32 {
		t.Helper()
		out, err := m.Step(ctx, s, tok)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(api.Float32s(out))
	}
	step(orig, column(ids, half-1))

	id, err := api.Identity(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	// The hash of a model in this process, read in place, is the hash of
	// its parameters as any model gives them (ReadParams).
	if h, err := api.WeightsHash(ctx, remoteModel{m}); err != nil || h != id.WeightsHash {
		t.Fatalf("weights hash through ReadParams %s (%v), in place %s", h, err, id.WeightsHash)
	}
	snap, err := api.Snapshot(ctx, m, orig, id)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Batch != B || snap.Tokens != half || snap.Tokens != orig.Len() || snap.Bytes() == 0 {
		t.Fatalf("snapshot of %d sequences at %d tokens (%d bytes), want %d at %d", snap.Batch, snap.Tokens, snap.Bytes(), B, half)
	}
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := checkpoint.WriteState(ctx, path, snap); err != nil {
		t.Fatal(err)
	}
	read, err := checkpoint.ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := read.MaxDiff(snap); err != nil || d != 0 || read.Arch != snap.Arch || read.ConfigHash != snap.ConfigHash || read.WeightsHash != snap.WeightsHash {
		t.Fatalf("state file: read back differs (max diff %v, %v)", d, err)
	}
	restored, err := api.Restore(ctx, m, read, id)
	if err != nil {
		t.Fatal(err)
	}
	if restored.Len() != half {
		t.Fatalf("restored state: Len %d, want %d", restored.Len(), half)
	}
	branch, err := api.CopyState(ctx, m, orig)
	if err != nil {
		t.Fatal(err)
	}
	for j := half; j < T; j++ {
		tok := column(ids, j)
		want := step(orig, tok)
		if got := step(restored, tok); !slices.Equal(got, want) {
			t.Fatalf("token %d: the restored state's logits differ from the original's", j)
		}
		other := slices.Clone(tok)
		for i := range other {
			other[i] = (other[i] + 1) % int32(m.Config().Vocab())
		}
		step(branch, other) // the branch goes its own way
	}
	now, err := api.Snapshot(ctx, m, orig, id)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := now.MaxDiff(must(api.Snapshot(ctx, m, restored, id))); err != nil || d != 0 {
		t.Fatalf("after the same tokens the original and restored states differ by %v (%v)", d, err)
	}
	if d, err := now.MaxDiff(must(api.Snapshot(ctx, m, branch, id))); err != nil || d == 0 {
		t.Fatalf("the branch fed other tokens holds what the original holds (difference %v, %v)", d, err)
	}

	// Refusals.
	otherID, err := api.Identity(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if otherID.WeightsHash == id.WeightsHash || otherID.ConfigHash != id.ConfigHash {
		t.Fatalf("the other model should differ in its weights only")
	}
	wantErr := func(what string, target error, fn func() error) {
		t.Helper()
		if err := fn(); !errors.Is(err, target) {
			t.Errorf("%s: error %v, want one wrapping %v", what, err, target)
		}
	}
	restore := func(s api.StateSnapshot) func() error {
		return func() error { _, err := api.Restore(ctx, m, s, id); return err }
	}
	wantErr("a snapshot of other weights", api.ErrConfig, func() error { _, err := api.Restore(ctx, other, snap, otherID); return err })
	bad := snap
	bad.Arch = "another"
	wantErr("a snapshot of another architecture", api.ErrConfig, restore(bad))
	bad = snap
	bad.ConfigHash = "0123"
	wantErr("a snapshot of another configuration", api.ErrConfig, restore(bad))
	bad = snap
	bad.Tensors = snap.Tensors[1:]
	wantErr("a snapshot without its first tensor", api.ErrShape, restore(bad))
	bad = snap
	bad.Tensors = slices.Clone(snap.Tensors)
	bad.Tensors[0].Shape = append(slices.Clone(bad.Tensors[0].Shape), 1)
	wantErr("a tensor of another shape", api.ErrShape, restore(bad))
	bad.Tensors[0].Shape = append(api.Shape{1}, snap.Tensors[0].Shape...)
	wantErr("a tensor whose first axis is not the batch", api.ErrCorrupt, restore(bad))
	bad = snap
	bad.Batch = 1 << 40
	wantErr("a damaged batch count", api.ErrCorrupt, restore(bad))
	wide, err := m.NewState(B + 1)
	if err != nil {
		t.Fatal(err)
	}
	sv := m.(api.StateSaver)
	wantErr("a snapshot into a state of another batch", api.ErrShape, func() error { return sv.LoadState(ctx, wide, snap) })
	wantErr("another model's state", api.ErrShape, func() error { _, err := sv.SaveState(ctx, must(other.NewState(B))); return err })
}

// must returns v, panicking on err (for calls that the test has just
// seen succeed).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// remoteModel hides every capability of a model but api.Model, as a model
// in another process has only those methods.
type remoteModel struct{ api.Model }
