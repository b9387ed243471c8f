package cpu

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// smallGEMM is the number of multiply-adds below which a batched MatMul
// runs its matrices in parallel, each on one goroutine, rather than one
// after the other, each split across all of them.
const smallGEMM = 1 << 18

// MatMul sets dst = alpha * op(a) op(b) + beta * dst (see api.Kernels):
// batched over the leading axes, with a rank-2 operand shared by all
// batches.
func (b *Backend) MatMul(dst, a, c api.Tensor, transA, transB bool, alpha, beta float32) {
	const op = "matmul"
	d, x, y := b.f32(dst, op), b.f32(a, op), b.f32(c, op)
	ra, rb, rd := len(x.shape), len(y.shape), len(d.shape)
	if ra < 2 || rb < 2 || rd < 2 {
		api.Panicf(api.ErrShape, "%s: operands %v and %v and dst %v need rank 2 or more", op, x.shape, y.shape, d.shape)
	}
	m, k := x.shape[ra-2], x.shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := y.shape[rb-2], y.shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	if k != kb {
		api.Panicf(api.ErrShape, "%s: inner sizes differ: op(a) of %v is %dx%d, op(b) of %v is %dx%d (transA=%v transB=%v)",
			op, x.shape, m, k, y.shape, kb, n, transA, transB)
	}
	// The batch axes: those of whichever operand has them (both must agree
	// when both do), and dst must have exactly them.
	batch := x.shape[:ra-2]
	if ra == 2 {
		batch = y.shape[:rb-2]
	} else if rb > 2 && !slices.Equal(batch, y.shape[:rb-2]) {
		api.Panicf(api.ErrShape, "%s: batch axes of %v and %v differ", op, x.shape, y.shape)
	}
	if rd != len(batch)+2 || !slices.Equal(d.shape[:rd-2], batch) || d.shape[rd-2] != m || d.shape[rd-1] != n {
		api.Panicf(api.ErrShape, "%s: dst has shape %v, want %v for a %v and b %v (transA=%v transB=%v)",
			op, d.shape, append(slices.Clone(batch), m, n), x.shape, y.shape, transA, transB)
	}

	nb := api.Shape(batch).NumElements()
	strideA, strideB := m*k, k*n
	if ra == 2 {
		strideA = 0
	}
	if rb == 2 {
		strideB = 0
	}
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	if nb > 1 && strideB == 0 && !transA {
		// A batch of untransposed matrices times one shared matrix is one
		// tall product: the rows of all batches are adjacent in a and dst.
		m, nb = m*nb, 1
	}
	one := func(i int, par splitter) {
		sgemm(par, transA, transB, m, n, k, alpha, x.f32[i*strideA:], lda, y.f32[i*strideB:], ldb, beta, d.f32[i*m*n:], n)
	}
	switch {
	case nb == 0:
	case nb > 1 && m*n*k < smallGEMM:
		b.parallelGrain(nb, max(1, smallGEMM/max(m*n*k, 1)), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				one(i, serial)
			}
		})
	default:
		for i := range nb {
			one(i, b.parallelGrain)
		}
	}
}
