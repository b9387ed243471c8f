package mamba

import (
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestReferenceKernels checks every variant on the CPU backend with its
// fused kernels hidden (backendtest.KernelsOnly), where nn runs its
// references of CausalConv1d and SelectiveScan in the parallel form and in
// decode steps, against the same model on the fused kernels: Forward in
// the parallel and chunkwise forms, Steps, a Prefill followed by Steps,
// the loss and every gradient.
func TestReferenceKernels(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 2})
			want, err := New(cfg, b, 7)
			if err != nil {
				t.Fatal(err)
			}
			got, err := New(cfg, backendtest.KernelsOnly(b), 7)
			if err != nil {
				t.Fatal(err)
			}
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(1, 2)), 2, 24, cfg.VocabSize)
			modeltest.CheckSameModel(t, want, got, ids, 15, []api.Form{{Mode: api.Chunkwise, Chunk: 5}}, modeltest.ReferenceLogitsTol, modeltest.ReferenceGradTol)
		})
	}
}
