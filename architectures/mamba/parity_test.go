package mamba

import (
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestParityTransformers loads each model that transformers saved under
// testdata/ and checks the parallel logits, the recurrent logits, the loss
// and every parameter's gradient against transformers' own results
// (modeltest.CheckParity), on the CPU backend's fused kernels and on nn's
// references of them (backendtest.KernelsOnly).
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
			t.Run("fused", func(t *testing.T) { modeltest.CheckParity(t, dir, dir, NameMamba, b) })
			t.Run("reference", func(t *testing.T) { modeltest.CheckParity(t, dir, dir, NameMamba, backendtest.KernelsOnly(b)) })
		})
	}
}
