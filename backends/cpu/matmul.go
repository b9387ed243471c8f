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
	if w := b.own(c); isLow(w.dtype) {
		b.matmulLowOperand(dst, a, w, transA, transB, alpha, beta)
		return
	}
	d, x, y := b.f32(dst, op), b.f32(a, op), b.f32(c, op)
	dims := api.MatMulShapes(op, d.shape, x.shape, y.shape, transA, transB)
	ra, rb := len(x.shape), len(y.shape)
	m, n, k := dims.M, dims.N, dims.K
	nb := dims.Batch.NumElements()
	p := matmulBatch{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: x.f32, b: y.f32, c: d.f32, lda: k, ldb: n, strideA: m * k, strideB: k * n}
	if ra == 2 {
		p.strideA = 0
	}
	if rb == 2 {
		p.strideB = 0
	}
	if transA {
		p.lda = m
	}
	if transB {
		p.ldb = k
	}
	if nb > 1 && p.strideB == 0 && !transA {
		// A batch of untransposed matrices times one shared matrix is one
		// tall product: the rows of all batches are adjacent in a and dst.
		p.m, nb = m*nb, 1
	}
	switch {
	case nb == 0:
	case nb > 1 && p.m*n*k < smallGEMM:
		b.matmulSmall(p, nb)
	default:
		for i := range nb {
			b.matmulOne(&p, i)
		}
	}
}

// matmulBatch describes the nb products of a MatMul: product i is
// c[i*m*n:] = alpha * op(a[i*strideA:]) op(b[i*strideB:]) + beta * c, with
// the operands' row strides lda and ldb (a stride of 0 shares an operand).
type matmulBatch struct {
	transA, transB   bool
	m, n, k          int
	alpha, beta      float32
	a, b, c          []float32
	lda, ldb         int
	strideA, strideB int
}

// sgemm computes product i with sgemm, split by par.
func (p *matmulBatch) sgemm(par splitter, i int) {
	sgemm(par, p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a[i*p.strideA:], p.lda, p.b[i*p.strideB:], p.ldb, p.beta, p.c[i*p.m*p.n:], p.n)
}

// matmulSmall computes the nb small products of p in parallel, each on one
// goroutine.
func (b *Backend) matmulSmall(p matmulBatch, nb int) {
	b.parallelGrain(nb, max(1, smallGEMM/max(p.m*p.n*p.k, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p.sgemm(serial, i)
		}
	})
}

// matmulOne computes product i of p split across the workers.
func (b *Backend) matmulOne(p *matmulBatch, i int) {
	p.sgemm(b, i)
}

// matmulLowOperand is MatMul with c a BF16 or Q8_0 matrix: the weight of
// x W^T, which is the only form taken (transB, not transA, c of rank 2).
func (b *Backend) matmulLowOperand(dst, a api.Tensor, w *Tensor, transA, transB bool, alpha, beta float32) {
	const op = "matmul"
	d, x := b.f32(dst, op), b.f32(a, op)
	if transA || !transB || len(w.shape) != 2 {
		api.Panicf(api.ErrDType, "%s: a %s operand %v is taken only as the transposed second operand of rank 2 (x W^T), got transA=%v transB=%v",
			op, w.dtype, w.shape, transA, transB)
	}
	n, k := w.shape[0], w.shape[1]
	ra := len(x.shape)
	if ra < 2 || x.shape[ra-1] != k {
		api.Panicf(api.ErrShape, "%s: operand %v times %s%v transposed: inner sizes differ", op, x.shape, w.dtype, w.shape)
	}
	if len(d.shape) != ra || !slices.Equal(d.shape[:ra-1], x.shape[:ra-1]) || d.shape[ra-1] != n {
		api.Panicf(api.ErrShape, "%s: dst has shape %v, want %v for a %v and b %s%v transposed",
			op, d.shape, append(slices.Clone(x.shape[:ra-1]), n), x.shape, w.dtype, w.shape)
	}
	b.matmulLow(api.Shape(x.shape[:ra-1]).NumElements(), n, k, alpha, x.f32, newLowMatrix(w, n, k), beta, d.f32)
}
