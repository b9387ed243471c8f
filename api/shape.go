package api

import (
	"fmt"
	"math"
	"slices"
)

// Shape is the size of each axis of a tensor, outermost first (row-major,
// C order). A scalar has an empty shape.
type Shape []int

// NumElements returns the product of the sizes (1 for a scalar).
func (s Shape) NumElements() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Rank returns the number of axes.
func (s Shape) Rank() int { return len(s) }

// Equal reports whether both shapes have the same sizes.
func (s Shape) Equal(o Shape) bool { return slices.Equal(s, o) }

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape { return slices.Clone(s) }

// Dim returns the size of axis i; negative i counts from the end (-1 is the
// last axis).
func (s Shape) Dim(i int) int {
	if i < 0 {
		i += len(s)
	}
	return s[i]
}

// String formats the shape as [2 3 4].
func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// Validate checks that every size is non-negative and that the element count
// does not overflow int. Readers of untrusted files call it before
// allocating.
func (s Shape) Validate() error {
	n := 1
	for _, d := range s {
		if d < 0 {
			return fmt.Errorf("shape %v has a negative size: %w", s, ErrShape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("shape %v has too many elements: %w", s, ErrShape)
		}
		n *= d
	}
	return nil
}

// BroadcastShapes returns the NumPy broadcast of a and b: shapes are aligned
// at their last axis, and each pair of sizes must be equal or contain a 1.
func BroadcastShapes(a, b Shape) (Shape, error) {
	n := max(len(a), len(b))
	out := make(Shape, n)
	for i := 1; i <= n; i++ {
		da, db := 1, 1
		if i <= len(a) {
			da = a[len(a)-i]
		}
		if i <= len(b) {
			db = b[len(b)-i]
		}
		switch {
		case da == db || db == 1:
			out[n-i] = da
		case da == 1:
			out[n-i] = db
		default:
			return nil, fmt.Errorf("broadcast %v with %v: %w", a, b, ErrShape)
		}
	}
	return out, nil
}

// MatMulDims are the sizes of a Kernels.MatMul: dst [Batch..., M, N] =
// op(a) [Batch..., M, K] op(b) [Batch..., K, N], where an operand of rank 2
// is used for every batch.
type MatMulDims struct {
	Batch   Shape // the batch axes (those of whichever operand has them)
	M, N, K int
}

// MatMulShapes checks the shapes of a MatMul's destination and operands
// (Kernels.MatMul) and returns its sizes; op names the kernel in the
// panic, which wraps ErrShape.
func MatMulShapes(op string, dst, a, b Shape, transA, transB bool) MatMulDims {
	ra, rb, rd := len(a), len(b), len(dst)
	if ra < 2 || rb < 2 || rd < 2 {
		Panicf(ErrShape, "%s: operands %v and %v and dst %v need rank 2 or more", op, a, b, dst)
	}
	m, k := a[ra-2], a[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b[rb-2], b[rb-1]
	if transB {
		kb, n = n, kb
	}
	if k != kb {
		Panicf(ErrShape, "%s: inner sizes differ: op(a) of %v is %dx%d, op(b) of %v is %dx%d (transA=%v transB=%v)",
			op, a, m, k, b, kb, n, transA, transB)
	}
	batch := a[:ra-2]
	if ra == 2 {
		batch = b[:rb-2]
	} else if rb > 2 && !slices.Equal(batch, b[:rb-2]) {
		Panicf(ErrShape, "%s: batch axes of %v and %v differ", op, a, b)
	}
	if rd != len(batch)+2 || !slices.Equal(dst[:rd-2], batch) || dst[rd-2] != m || dst[rd-1] != n {
		Panicf(ErrShape, "%s: dst has shape %v, want %v for a %v and b %v (transA=%v transB=%v)",
			op, dst, append(slices.Clone(batch), m, n), a, b, transA, transB)
	}
	return MatMulDims{Batch: batch, M: m, N: n, K: k}
}

// CheckWindow checks a window of Kernels.Slice or SetSlice: part, of
// whole's shape but along axis, lies at start inside whole. op names the
// kernel in the panic, which wraps ErrShape (ErrOutOfRange for the
// position).
func CheckWindow(op string, whole, part Shape, axis, start int) {
	rank := len(whole)
	if len(part) != rank || axis < 0 || axis >= rank {
		Panicf(ErrShape, "%s: window %v of %v along axis %d", op, part, whole, axis)
	}
	for i := range rank {
		if i != axis && part[i] != whole[i] {
			Panicf(ErrShape, "%s: window %v of %v along axis %d: axis %d differs", op, part, whole, axis, i)
		}
	}
	if n := part[axis]; start < 0 || start > whole[axis]-n {
		Panicf(ErrOutOfRange, "%s: window [%d,%d) of axis %d of %v", op, start, start+n, axis, whole)
	}
}

// CheckPermute checks a Kernels.Permute: perm is a permutation of src's
// axes and dst has src's shape permuted by it (dst axis i is src axis
// perm[i]). op names the kernel in the panic, which wraps ErrShape.
func CheckPermute(op string, dst, src Shape, perm []int) {
	rank := len(src)
	if len(perm) != rank {
		Panicf(ErrShape, "%s: permutation %v of the %d axes of %v", op, perm, rank, src)
	}
	seen := make([]bool, rank)
	want := make(Shape, rank)
	for i, p := range perm {
		if p < 0 || p >= rank || seen[p] {
			Panicf(ErrShape, "%s: %v is not a permutation of the axes of %v", op, perm, src)
		}
		seen[p] = true
		want[i] = src[p]
	}
	if !dst.Equal(want) {
		Panicf(ErrShape, "%s: dst has shape %v, want %v (src %v permuted by %v)", op, dst, want, src, perm)
	}
}
