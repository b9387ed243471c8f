package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestMatMulBatchPaths covers MatMul's three batch strategies against the
// float64 reference, with 1 and 3 threads giving the same bits: a batch of
// untransposed matrices times a shared one (folded into one tall product),
// many small products (run in parallel, one per goroutine), and few large
// ones (each split across threads); plus batched matrix-vector products.
func TestMatMulBatchPaths(t *testing.T) {
	cases := []struct {
		name           string
		batchA, batchB []int
		m, k, n        int
		transA, transB bool
	}{
		{"fold", []int{5}, nil, 33, 40, 29, false, true},
		{"shared_a", nil, []int{6}, 33, 40, 29, true, false},
		{"many_small", []int{4, 16}, []int{4, 16}, 20, 30, 25, false, false},
		{"few_large", []int{2}, []int{2}, 70, 90, 80, true, true},
		{"matvec_row", []int{8}, []int{8}, 1, 300, 200, false, true},
		{"matvec_col", []int{8}, []int{8}, 200, 300, 1, false, false},
	}
	r := rand.New(rand.NewPCG(10, 1))
	for _, c := range cases {
		as := append(append([]int(nil), c.batchA...), c.m, c.k)
		if c.transA {
			as = append(append([]int(nil), c.batchA...), c.k, c.m)
		}
		bs := append(append([]int(nil), c.batchB...), c.k, c.n)
		if c.transB {
			bs = append(append([]int(nil), c.batchB...), c.n, c.k)
		}
		batch := c.batchA
		if len(c.batchB) > len(batch) {
			batch = c.batchB
		}
		ds := append(append([]int(nil), batch...), c.m, c.n)
		nb := api.Shape(batch).NumElements()
		ref := New(api.BackendOptions{Threads: 1})
		a, b, old := randT(ref, r, -1, 1, as...), randT(ref, r, -1, 1, bs...), randT(ref, r, -1, 1, ds...)
		want := make([]float64, 0, len(old.f32))
		lda, ldb := c.k, c.n
		if c.transA {
			lda = c.m
		}
		if c.transB {
			ldb = c.k
		}
		for i := range nb {
			sa, sb := i*c.m*c.k, i*c.k*c.n
			if len(c.batchA) == 0 {
				sa = 0
			}
			if len(c.batchB) == 0 {
				sb = 0
			}
			want = append(want, naiveGEMM(c.transA, c.transB, c.m, c.n, c.k, 0.5, a.f32[sa:], lda, b.f32[sb:], ldb, 2,
				old.f32[i*c.m*c.n:], c.n)...)
		}
		var first []float32
		for _, threads := range testThreads {
			be := New(api.BackendOptions{Threads: threads})
			d := newT(be, old.f32, ds...)
			be.MatMul(d, newT(be, a.f32, as...), newT(be, b.f32, bs...), c.transA, c.transB, 0.5, 2)
			checkClose(t, fmt.Sprintf("%s threads=%d", c.name, threads), d.f32, want, 1e-5)
			if first == nil {
				first = d.f32
			} else {
				checkSameBits(t, c.name+" 1 vs 3 threads", d.f32, first)
			}
		}
	}
}
