package mamba

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// Tolerances of the parity checks against transformers, as max |got-want| /
// max |want| over the compared tensor.
const (
	parityLogitsTol = 1e-4
	parityLossTol   = 1e-5
	parityGradTol   = 1e-3
)

// TestParityTransformers loads each model that transformers saved under
// testdata/ and checks the parallel logits, the recurrent logits, the loss
// and every parameter's gradient against transformers' own results, on the
// CPU backend's fused kernels and on nn's references of them
// (backendtest.KernelsOnly).
func TestParityTransformers(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*", "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("found %d fixtures under testdata/, want at least 2 (run make mamba-fixtures)", len(dirs))
	}
	for _, file := range dirs {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 2})
			t.Run("fused", func(t *testing.T) { checkParity(t, dir, b) })
			t.Run("reference", func(t *testing.T) { checkParity(t, dir, backendtest.KernelsOnly(b)) })
		})
	}
}

// checkParity checks the model in dir against the reference.safetensors
// that scripts/make_mamba_fixtures.py recorded from transformers'
// MambaForCausalLM beside it, on backend b.
func checkParity(t *testing.T, dir string, b api.Backend) {
	ctx := context.Background()
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := loaded.(api.Trainable)
	if !ok {
		t.Fatalf("model %T is not trainable", loaded)
	}
	ref := modeltest.ReadReference(t, dir)
	B, T, V := len(ref.IDs), len(ref.IDs[0]), m.Config().Vocab()
	want := ref.Logits(t, "logits", V)

	out, err := m.Forward(ctx, ref.IDs, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	modeltest.CheckLogits(t, "parallel", modeltest.Values(t, "Forward", out, api.Shape{B, T, V}), want, parityLogitsTol)
	modeltest.CheckLogits(t, "recurrent", modeltest.RecurrentLogits(t, m, ref.IDs), want, parityLogitsTol)
	modeltest.CheckLossAndGrads(t, m, ref, parityLossTol, parityGradTol)
}
