package retnet

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
// references of Rotary and Retention in every form and in decode steps,
// against the same model on the fused kernels: Forward in the parallel,
// chunkwise (chunks of 1, 4 and the default) and recurrent forms, Steps, a
// Prefill followed by Steps, the loss and every gradient.
func TestReferenceKernels(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 2})
			want := newTestModel(t, cfg, b, 7)
			got := newTestModel(t, cfg, backendtest.KernelsOnly(b), 7)
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(1, 2)), 2, 24, cfg.VocabSize)
			forms := []api.Form{{Mode: api.Chunkwise, Chunk: 1}, {Mode: api.Chunkwise, Chunk: 4}, {Mode: api.Chunkwise},
				{Mode: api.Recurrent}}
			modeltest.CheckSameModel(t, want, got, ids, 15, forms, modeltest.ReferenceLogitsTol, modeltest.ReferenceGradTol)
		})
	}
}
