package cpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// benchTensor returns an F32 tensor of the given shape with values in
// [-1, 1).
func benchTensor(b api.Backend, r *rand.Rand, shape ...int) api.Tensor {
	v := make([]float32, api.Shape(shape).NumElements())
	for i := range v {
		v[i] = float32(2*r.Float64() - 1)
	}
	return api.FromFloat32s(b, v, shape...)
}

// BenchmarkMatMul measures MatMul on square-ish products (GFLOP/s) and on
// the matrix-vector product of decoding (GB/s of weights read), with one
// and two threads. Sizes are M x N x K.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, threads := range []int{1, 2} {
		be := cpu.New(api.BackendOptions{Threads: threads})
		for _, s := range [][3]int{{1024, 1024, 1024}, {256, 1024, 1024}} {
			m, n, k := s[0], s[1], s[2]
			x, w, dst := benchTensor(be, r, m, k), benchTensor(be, r, k, n), be.Alloc(api.F32, m, n)
			b.Run(fmt.Sprintf("threads=%d/%dx%dx%d", threads, m, n, k), func(b *testing.B) {
				for b.Loop() {
					be.MatMul(dst, x, w, false, false, 1, 0)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		// Decoding: one token's activations times a weight stored [out, in]
		// as PyTorch stores linear layers (transB), and stored [in, out].
		const n, k = 2048, 2048
		x := benchTensor(be, r, 1, k)
		dst := be.Alloc(api.F32, 1, n)
		for _, transB := range []bool{true, false} {
			w := benchTensor(be, r, n, k)
			b.Run(fmt.Sprintf("threads=%d/1x%dx%d/transB=%v", threads, n, k, transB), func(b *testing.B) {
				for b.Loop() {
					be.MatMul(dst, x, w, false, transB, 1, 0)
				}
				b.ReportMetric(4*float64(n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}
