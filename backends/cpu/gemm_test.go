package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// naiveGEMM is the float64 triple-loop reference of sgemm.
func naiveGEMM(transA, transB bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var x, y float32
				if transA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if transB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += float64(x) * float64(y)
			}
			out[i*n+j] = alpha * s
			if beta != 0 {
				out[i*n+j] += beta * float64(c[i*ldc+j])
			}
		}
	}
	return out
}

// gemmRel returns max |got-want| / max |want| over the m x n block of got
// (row stride ldc); NaN gives +Inf.
func gemmRel(got []float32, ldc int, want []float64, m, n int) float64 {
	var diff, scale float64
	for i := range m {
		for j := range n {
			g, w := float64(got[i*ldc+j]), want[i*n+j]
			if math.IsNaN(g) {
				return math.Inf(1)
			}
			diff = max(diff, math.Abs(g-w))
			scale = max(scale, math.Abs(w))
		}
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*r.Float64() - 1)
	}
	return v
}

// TestSGEMM checks sgemm against the float64 triple loop over odd and prime
// sizes, every transpose combination, several alpha/beta pairs, padded
// leading dimensions, and 1, 2 and 3 threads. Cells of C outside the m x n
// block must stay untouched, and with beta == 0 the NaN that C starts with
// must not show.
func TestSGEMM(t *testing.T) {
	sizes := []int{1, 2, 3, 4, 5, 7, 11, 13, 31, 37, 64, 70}
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {-0.5, 0}, {0.75, 1}, {2, -1.25}}
	r := rand.New(rand.NewPCG(1, 2))
	for _, threads := range []int{1, 2, 3} {
		be := New(api.BackendOptions{Threads: threads})
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for it := 0; it < 40; it++ {
					m, n, k := sizes[r.IntN(len(sizes))], sizes[r.IntN(len(sizes))], sizes[r.IntN(len(sizes))]
					sc := scalars[it%len(scalars)]
					pad := it % 3 // extra columns in every leading dimension
					lda, ldb, ldc := k+pad, n+pad, n+pad
					rowsA, rowsB := m, k
					if ta {
						lda, rowsA = m+pad, k
					}
					if tb {
						ldb, rowsB = k+pad, n
					}
					a, b := randF32(r, rowsA*lda), randF32(r, rowsB*ldb)
					c := randF32(r, m*ldc)
					if sc.beta == 0 {
						for i := range c {
							c[i] = float32(math.NaN())
						}
					}
					want := naiveGEMM(ta, tb, m, n, k, float64(sc.alpha), a, lda, b, ldb, float64(sc.beta), c, ldc)
					old := append([]float32(nil), c...)
					sgemm(be.parallelGrain, ta, tb, m, n, k, sc.alpha, a, lda, b, ldb, sc.beta, c, ldc)
					name := fmt.Sprintf("threads=%d transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v pad=%d",
						threads, ta, tb, m, n, k, sc.alpha, sc.beta, pad)
					if e := gemmRel(c, ldc, want, m, n); e > 1e-5 {
						t.Errorf("%s: relative error %.3g", name, e)
					}
					for i := range m {
						for j := n; j < ldc; j++ {
							if math.Float32bits(c[i*ldc+j]) != math.Float32bits(old[i*ldc+j]) {
								t.Errorf("%s: padding C[%d,%d] changed", name, i, j)
							}
						}
					}
				}
			}
		}
	}
}

// TestSGEMMLarge checks shapes that cross every blocking boundary (KC, MC,
// the column chunks) and the matrix-vector paths at sizes where they split
// across threads, and that 1 and 3 threads give the same bits.
func TestSGEMMLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large GEMM shapes")
	}
	shapes := [][3]int{{200, 401, 520}, {1, 700, 600}, {700, 1, 600}, {97, 193, 257}}
	r := rand.New(rand.NewPCG(3, 4))
	one, three := New(api.BackendOptions{Threads: 1}), New(api.BackendOptions{Threads: 3})
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				lda, ldb := k, n
				if ta {
					lda = m
				}
				if tb {
					ldb = k
				}
				a, b := randF32(r, m*k), randF32(r, k*n)
				c0 := randF32(r, m*n)
				want := naiveGEMM(ta, tb, m, n, k, 1.5, a, lda, b, ldb, -0.5, c0, n)
				c1, c3 := append([]float32(nil), c0...), append([]float32(nil), c0...)
				sgemm(one.parallelGrain, ta, tb, m, n, k, 1.5, a, lda, b, ldb, -0.5, c1, n)
				sgemm(three.parallelGrain, ta, tb, m, n, k, 1.5, a, lda, b, ldb, -0.5, c3, n)
				name := fmt.Sprintf("%dx%dx%d transA=%v transB=%v", m, n, k, ta, tb)
				if e := gemmRel(c1, n, want, m, n); e > 1e-5 {
					t.Errorf("%s: relative error %.3g", name, e)
				}
				for i := range c1 {
					if math.Float32bits(c1[i]) != math.Float32bits(c3[i]) {
						t.Errorf("%s: 1 and 3 threads differ at %d: %v vs %v", name, i, c1[i], c3[i])
						break
					}
				}
			}
		}
	}
}

// TestSGEMMDegenerate checks k == 0 and alpha == 0 (C = beta*C, A and B not
// read) and empty outputs.
func TestSGEMMDegenerate(t *testing.T) {
	be := New(api.BackendOptions{Threads: 2})
	nan := float32(math.NaN())
	c := []float32{1, 2, 3, 4, 5, 6}
	sgemm(be.parallelGrain, false, false, 2, 3, 0, 1, nil, 0, nil, 3, 2, c, 3)
	for i, v := range c {
		if v != float32(2*(i+1)) {
			t.Fatalf("k=0, beta=2: C = %v", c)
		}
	}
	sgemm(be.parallelGrain, false, false, 2, 3, 2, 0, []float32{nan, nan, nan, nan}, 2, []float32{nan, nan, nan, nan, nan, nan}, 3, 0, c, 3)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("alpha=0, beta=0: C = %v, want zeros", c)
		}
	}
	sgemm(be.parallelGrain, true, true, 0, 3, 2, 1, nil, 0, make([]float32, 6), 2, 0, nil, 3)
	sgemm(be.parallelGrain, true, true, 3, 0, 2, 1, make([]float32, 6), 3, nil, 2, 0, nil, 0)
}
