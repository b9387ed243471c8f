package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("MatMul", testMatMul)
	register("MatMulBatched", testMatMulBatched)
	register("MatMulGrad", testMatMulGrad)
	register("MatMulDeterminism", testMatMulDeterminism)
}

// mmOperand is an operand of a reference matmul: its values and shape.
type mmOperand struct {
	v     []float64
	shape []int
}

// refMatMul computes alpha * op(a) op(b) + beta * dst in float64, with the
// batch rules of Kernels.MatMul (equal leading axes, or a rank-2 operand
// shared by every batch). dst holds the old contents, read only when beta
// is not zero; the result has dst's length.
func refMatMul(a, b mmOperand, transA, transB bool, alpha, beta float64, dst []float64) []float64 {
	ra, rb := len(a.shape), len(b.shape)
	m, k := a.shape[ra-2], a.shape[ra-1]
	if transA {
		m, k = k, m
	}
	n := b.shape[rb-1]
	if transB {
		n = b.shape[rb-2]
	}
	batch := numel(a.shape[:ra-2])
	if ra == 2 {
		batch = numel(b.shape[:rb-2])
	}
	aStride, bStride := m*k, k*n
	if ra == 2 {
		aStride = 0
	}
	if rb == 2 {
		bStride = 0
	}
	out := make([]float64, batch*m*n)
	for p := range batch {
		av, bv := a.v[p*aStride:], b.v[p*bStride:]
		for i := range m {
			for j := range n {
				var s float64
				for q := range k {
					x := av[i*k+q]
					if transA {
						x = av[q*m+i]
					}
					y := bv[q*n+j]
					if transB {
						y = bv[j*k+q]
					}
					s += x * y
				}
				o := p*m*n + i*n + j
				out[o] = alpha * s
				if beta != 0 {
					out[o] += beta * dst[o]
				}
			}
		}
	}
	return out
}

// mmShapes returns the stored shapes of a and b for op(a) [M,K] and op(b)
// [K,N] with the given batch prefixes.
func mmShapes(batchA, batchB []int, m, k, n int, transA, transB bool) (as, bs []int) {
	as = append(append([]int(nil), batchA...), m, k)
	if transA {
		as = append(append([]int(nil), batchA...), k, m)
	}
	bs = append(append([]int(nil), batchB...), k, n)
	if transB {
		bs = append(append([]int(nil), batchB...), n, k)
	}
	return as, bs
}

// mmScalars are the (alpha, beta) pairs tested; dst starts as NaN when
// beta is 0, which must not leak into the result.
var mmScalars = []struct{ alpha, beta float32 }{{1, 0}, {-0.75, 0}, {0.5, -1.5}}

// runMatMulCase checks one MatMul call against the reference.
func runMatMulCase(t *testing.T, b api.Backend, seed uint64, batchA, batchB []int, m, k, n int, transA, transB bool, alpha, beta float32) {
	t.Helper()
	r := newRand(seed)
	as, bs := mmShapes(batchA, batchB, m, k, n, transA, transB)
	batch := batchA
	if len(batchB) > len(batchA) {
		batch = batchB
	}
	ds := append(append([]int(nil), batch...), m, n)
	a := mmOperand{f32(randVals(r, numel(as), -1, 1)), as}
	bo := mmOperand{f32(randVals(r, numel(bs), -1, 1)), bs}
	old := filled(numel(ds), math.NaN())
	if beta != 0 {
		old = f32(randVals(r, numel(ds), -1, 1))
	}
	want := refMatMul(a, bo, transA, transB, float64(alpha), float64(beta), old)
	dst := upload(b, old, ds...)
	b.MatMul(dst, upload(b, a.v, as...), upload(b, bo.v, bs...), transA, transB, alpha, beta)
	checkRel(t, fmt.Sprintf("matmul a%v b%v transA=%v transB=%v alpha=%v beta=%v", as, bs, transA, transB, alpha, beta),
		download(dst), want, RelTol)
}

func testMatMul(t *testing.T, b api.Backend) {
	sizes := [][3]int{ // M, K, N
		{1, 1, 1}, {13, 17, 19}, {1, 31, 7}, {67, 1, 5}, {7, 33, 1},
		{5, 0, 3}, {0, 4, 3}, {4, 3, 0},
		{130, 257, 129}, // crosses any blocking, and splits unevenly over threads
	}
	for _, s := range sizes {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				runSub(t, fmt.Sprintf("%dx%dx%d/transA=%v/transB=%v", s[0], s[1], s[2], ta, tb), func(t *testing.T) {
					for i, sc := range mmScalars {
						runMatMulCase(t, b, uint64(s[0]*1000+s[1]*10+i), nil, nil, s[0], s[1], s[2], ta, tb, sc.alpha, sc.beta)
					}
				})
			}
		}
	}
}

func testMatMulBatched(t *testing.T, b api.Backend) {
	cases := []struct {
		name           string
		batchA, batchB []int
	}{
		{"equal", []int{2, 3}, []int{2, 3}},
		{"batch1", []int{1}, []int{1}},
		{"batch0", []int{0}, []int{0}},
		{"shared_a", nil, []int{4}},
		{"shared_b", []int{4}, nil},
		{"shared_a_rank4", nil, []int{2, 3}},
		{"shared_b_rank4", []int{2, 3}, nil},
		{"large_shared_b", []int{3}, nil},
	}
	for _, c := range cases {
		m, k, n := 5, 7, 4
		if c.name == "large_shared_b" {
			m, k, n = 67, 45, 33
		}
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				runSub(t, fmt.Sprintf("%s/transA=%v/transB=%v", c.name, ta, tb), func(t *testing.T) {
					for i, sc := range mmScalars {
						runMatMulCase(t, b, uint64(100+i), c.batchA, c.batchB, m, k, n, ta, tb, sc.alpha, sc.beta)
					}
				})
			}
		}
	}
}

// testMatMulGrad builds the gradients of C = op(A) op(B) out of MatMul calls,
// as nn composes them, and checks them against finite differences.
func testMatMulGrad(t *testing.T, b api.Backend) {
	const m, k, n = 4, 5, 3
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			runSub(t, fmt.Sprintf("transA=%v/transB=%v", ta, tb), func(t *testing.T) {
				r := newRand(31)
				as, bs := mmShapes(nil, nil, m, k, n, ta, tb)
				a := f32(randVals(r, numel(as), -1, 1))
				bv := f32(randVals(r, numel(bs), -1, 1))
				dc := f32(randVals(r, m*n, -1, 1))
				want := numericGrad(func(in [][]float64) []float64 {
					return refMatMul(mmOperand{in[0], as}, mmOperand{in[1], bs}, ta, tb, 1, 0, nil)
				}, [][]float64{a, bv}, dc)

				at, bt, dct := upload(b, a, as...), upload(b, bv, bs...), upload(b, dc, m, n)
				da, db := b.Alloc(api.F32, as...), b.Alloc(api.F32, bs...)
				switch {
				case !ta && !tb: // C = A B
					b.MatMul(da, dct, bt, false, true, 1, 0) // dA = dC B^T
					b.MatMul(db, at, dct, true, false, 1, 0) // dB = A^T dC
				case !ta && tb: // C = A B^T
					b.MatMul(da, dct, bt, false, false, 1, 0) // dA = dC B
					b.MatMul(db, dct, at, true, false, 1, 0)  // dB = dC^T A
				case ta && !tb: // C = A^T B
					b.MatMul(da, bt, dct, false, true, 1, 0)  // dA = B dC^T
					b.MatMul(db, at, dct, false, false, 1, 0) // dB = A dC
				default: // C = A^T B^T
					b.MatMul(da, bt, dct, true, true, 1, 0) // dA = B^T dC^T
					b.MatMul(db, dct, at, true, true, 1, 0) // dB = dC^T A^T
				}
				checkRel(t, "dA", download(da), want[0], GradTol)
				checkRel(t, "dB", download(db), want[1], GradTol)
			})
		}
	}
	// A batch of inputs times one shared weight, as a linear layer: the
	// weight's gradient sums over the batch through a reshape, and a second
	// backward step accumulates with beta = 1.
	runSub(t, "shared_weight_accumulate", func(t *testing.T) {
		const batch = 3
		r := newRand(32)
		x := f32(randVals(r, batch*m*k, -1, 1))
		w := f32(randVals(r, n*k, -1, 1)) // [N,K], used transposed
		dy := f32(randVals(r, batch*m*n, -1, 1))
		want := numericGrad(func(in [][]float64) []float64 {
			return refMatMul(mmOperand{in[0], []int{batch, m, k}}, mmOperand{in[1], []int{n, k}}, false, true, 1, 0, nil)
		}, [][]float64{x, w}, dy)

		xt, wt, dyt := upload(b, x, batch, m, k), upload(b, w, n, k), upload(b, dy, batch, m, n)
		dx, dw := b.Alloc(api.F32, batch, m, k), b.Alloc(api.F32, n, k)
		b.MatMul(dx, dyt, wt, false, false, 1, 0) // dX = dY W
		b.MatMul(dw, b.Reshape(dyt, batch*m, n), b.Reshape(xt, batch*m, k), true, false, 1, 0)
		checkRel(t, "dX", download(dx), want[0], GradTol)
		checkRel(t, "dW", download(dw), want[1], GradTol)
		b.MatMul(dw, b.Reshape(dyt, batch*m, n), b.Reshape(xt, batch*m, k), true, false, 1, 1)
		twice := make([]float64, len(want[1]))
		for i, v := range want[1] {
			twice[i] = 2 * v
		}
		checkRel(t, "dW accumulated twice", download(dw), twice, GradTol)
	})
}

func testMatMulDeterminism(t *testing.T, b api.Backend) {
	const m, k, n = 130, 257, 129
	r := newRand(41)
	for _, tb := range []bool{false, true} {
		runSub(t, fmt.Sprintf("transB=%v", tb), func(t *testing.T) {
			as, bs := mmShapes(nil, nil, m, k, n, false, tb)
			at := upload(b, randVals(r, numel(as), -1, 1), as...)
			bt := upload(b, randVals(r, numel(bs), -1, 1), bs...)
			first, second := b.Alloc(api.F32, m, n), b.Alloc(api.F32, m, n)
			b.MatMul(first, at, bt, false, tb, 1, 0)
			b.MatMul(second, at, bt, false, tb, 1, 0)
			checkBytes(t, "the same MatMul twice", downloadRaw(second), downloadRaw(first))
		})
	}
}
