//go:build !race

// The benchmark and the allocation check of the retention kernels: both
// measure what the race detector changes (it slows everything and makes
// sync.Pool drop buffers at random), so neither runs under it.

package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// retBench holds the inputs and outputs of one retention shape on one
// backend.
type retBench struct {
	in     api.RetentionArgs
	o, do  api.Tensor
	sT     api.Tensor // the final state (stateful forms)
	g      api.RetentionGrads
	chunk  int
	stated bool // whether the inputs carry a state in (Offset > 0)
}

// newRetBench draws inputs of shape [B,H,T,dk] and [B,H,T,dv] with values in
// [-1, 1) (keys scaled by dk^-0.5, as the models scale them), decays
// 1 - 2^(-5-h) and, when offset > 0, a carried-in state.
func newRetBench(be api.Backend, r *rand.Rand, B, H, T, dk, dv, chunk, offset int) *retBench {
	rb := &retBench{chunk: chunk, stated: offset > 0}
	k := benchTensor(be, r, B, H, T, dk)
	be.Affine(k, k, float32(1/math.Sqrt(float64(dk))), 0)
	rb.in = api.RetentionArgs{Q: benchTensor(be, r, B, H, T, dk), K: k, V: benchTensor(be, r, B, H, T, dv),
		Gamma: make([]float32, H), Offset: offset, Chunk: chunk}
	for h := range H {
		rb.in.Gamma[h] = float32(1 - math.Pow(2, float64(-5-h)))
	}
	rb.o, rb.do = be.Alloc(api.F32, B, H, T, dv), benchTensor(be, r, B, H, T, dv)
	rb.sT = be.Alloc(api.F32, B, H, dk, dv)
	rb.g = api.RetentionGrads{Q: be.Alloc(api.F32, B, H, T, dk), K: be.Alloc(api.F32, B, H, T, dk), V: be.Alloc(api.F32, B, H, T, dv)}
	if rb.stated {
		rb.in.S0 = benchTensor(be, r, B, H, dk, dv)
		rb.g.S0 = be.Alloc(api.F32, B, H, dk, dv)
	}
	return rb
}

// forward runs the kernel of form, with the final state for the stateful
// forms.
func (rb *retBench) forward(be *cpu.Backend, form api.RetentionForm) {
	var sT api.Tensor
	if form != api.RetentionParallel {
		sT = rb.sT
	}
	be.Retention(form, rb.o, sT, rb.in)
}

// backward runs the gradient of form, with a gradient at the final state
// for the stateful forms.
func (rb *retBench) backward(be *cpu.Backend, form api.RetentionForm) {
	var dsT api.Tensor
	if form != api.RetentionParallel {
		dsT = rb.sT
	}
	be.RetentionGrad(form, rb.g, rb.in, rb.do, dsT)
}

// BenchmarkRetention measures the parallel and the chunkwise (chunks of
// 64) retention kernels, forward and backward, at the shape of one
// DenseRetNet-350M layer on a 512-token sequence: B 1, H 2, T 512, dk 384,
// dv 1536, with one and two threads.
func BenchmarkRetention(b *testing.B) {
	const B, H, T, dk, dv, chunk = 1, 2, 512, 384, 1536, 64
	r := rand.New(rand.NewPCG(5, 5))
	for _, threads := range []int{1, 2} {
		be := cpu.New(api.BackendOptions{Threads: threads})
		rb := newRetBench(be, r, B, H, T, dk, dv, chunk, 0)
		for _, form := range []api.RetentionForm{api.RetentionParallel, api.RetentionChunkwise} {
			for _, pass := range []string{"forward", "backward"} {
				b.Run(fmt.Sprintf("threads=%d/%v/%s", threads, form, pass), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if pass == "forward" {
							rb.forward(be, form)
						} else {
							rb.backward(be, form)
						}
					}
					b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
				})
			}
		}
	}
}

// TestRetentionAllocatesNothing checks that once warm every retention
// kernel, forward and backward, allocates nothing: with 1 thread (heads on
// one goroutine), 2 (heads on two) and 3 (more threads than heads: the
// products are split).
func TestRetentionAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, threads := range []int{1, 2, 3} {
		be := cpu.New(api.BackendOptions{Threads: threads})
		for _, offset := range []int{0, 5} {
			rb := newRetBench(be, r, 1, 2, 100, 16, 24, 32, offset)
			for _, form := range []api.RetentionForm{api.RetentionParallel, api.RetentionChunkwise, api.RetentionRecurrent} {
				if form == api.RetentionParallel && rb.stated {
					continue
				}
				for _, pass := range []string{"forward", "backward"} {
					call := func() { rb.forward(be, form) }
					if pass == "backward" {
						call = func() { rb.backward(be, form) }
					}
					for range 5 { // the warm-up fills the pools
						call()
					}
					if n := testing.AllocsPerRun(50, call); n != 0 {
						t.Errorf("%d threads, offset %d, %v %s: %.1f allocations per call", threads, offset, form, pass, n)
					}
				}
			}
		}
	}
}
