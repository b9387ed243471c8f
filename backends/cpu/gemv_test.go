package cpu

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// naiveGEMV is the float64 reference of the dot-product form of gemvWith:
// out[i*rows+j] = alpha * sum_p mat[j*ld+p] x[i*ldx+p] + beta * y[i*ldy+j].
func naiveGEMV(rows, cols int, alpha float64, mat []float32, ld int, x []float32, ldx, nx int, beta float64, y []float32, ldy int) []float64 {
	out := make([]float64, nx*rows)
	for i := range nx {
		for j := range rows {
			var s float64
			for p := range cols {
				s += float64(mat[j*ld+p]) * float64(x[i*ldx+p])
			}
			out[i*rows+j] = alpha * s
			if beta != 0 {
				out[i*rows+j] += beta * float64(y[i*ldy+j])
			}
		}
	}
	return out
}

// forEachGEMVKernel runs fn as a subtest for every dot-product kernel
// compiled in, skipping those this CPU cannot run.
func forEachGEMVKernel(t *testing.T, fn func(t *testing.T, kern *gemvKernel)) {
	for _, kern := range gemvKernels {
		t.Run(kern.name, func(t *testing.T) {
			if !kern.supported {
				t.Skipf("this CPU cannot run the %s kernel", kern.name)
			}
			fn(t, kern)
		})
	}
}

// padded returns n rows of cols random values with row stride cols+pad,
// the padding filled with fill.
func padded(r *rand.Rand, n, cols, pad int, fill float32) []float32 {
	v := make([]float32, n*(cols+pad))
	for i := range n {
		for p := range cols + pad {
			if p < cols {
				v[i*(cols+pad)+p] = float32(2*r.Float64() - 1)
			} else {
				v[i*(cols+pad)+p] = fill
			}
		}
	}
	return v
}

// TestGEMVKernels checks the list of kernels: the generic one last and
// supported, gemv using the first supported one.
func TestGEMVKernels(t *testing.T) {
	if last := gemvKernels[len(gemvKernels)-1]; last != gemvGeneric || !last.supported {
		t.Fatalf("last kernel is %q (supported=%v), want the generic one", last.name, last.supported)
	}
	for _, kern := range gemvKernels {
		if kern.supported {
			if gemvBest != kern {
				t.Errorf("gemv uses %q, want %q, the first supported kernel", gemvBest.name, kern.name)
			}
			break
		}
	}
	t.Logf("gemv uses the %s kernel", gemvBest.name)
}

// TestGEMVDots checks the dot-product form with every kernel against the
// float64 reference: sizes on both sides of every multiple of 8 and 32
// elements and of 4 rows, 1 to 8 vectors, several alpha/beta pairs and 1,
// 2 and 3 threads. The padding of every matrix and vector row is NaN and
// must not show (the kernels read only cols values of a row), nor must the
// NaN that the outputs start with when beta == 0; the padding of the
// outputs must stay untouched.
func TestGEMVDots(t *testing.T) {
	rowSizes := []int{1, 2, 3, 4, 5, 7, 8, 9, 13, 33}
	colSizes := []int{1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 39, 40, 63, 64, 65, 100, 257}
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {-0.5, 0}, {0.75, 1}, {2, -1.25}}
	nan := float32(math.NaN())
	forEachGEMVKernel(t, func(t *testing.T, kern *gemvKernel) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, threads := range []int{1, 2, 3} {
			be := New(api.BackendOptions{Threads: threads})
			for it := range 300 {
				rows, cols, nx := rowSizes[r.IntN(len(rowSizes))], colSizes[r.IntN(len(colSizes))], 1+r.IntN(8)
				sc := scalars[it%len(scalars)]
				pad := it % 3
				ld, ldx, ldy := cols+pad, cols+pad, rows+pad
				mat, x := padded(r, rows, cols, pad, nan), padded(r, nx, cols, pad, nan)
				y := padded(r, nx, rows, pad, 7)
				if sc.beta == 0 {
					for i := range nx {
						for j := range rows {
							y[i*ldy+j] = nan
						}
					}
				}
				want := naiveGEMV(rows, cols, float64(sc.alpha), mat, ld, x, ldx, nx, float64(sc.beta), y, ldy)
				gemvWith(kern, be, false, rows, cols, sc.alpha, mat, ld, x, ldx, nx, sc.beta, y, ldy)
				name := fmt.Sprintf("threads=%d rows=%d cols=%d nx=%d alpha=%v beta=%v pad=%d",
					threads, rows, cols, nx, sc.alpha, sc.beta, pad)
				if e := gemmRel(y, ldy, want, nx, rows); e > 1e-5 {
					t.Errorf("%s: relative error %.3g", name, e)
				}
				for i := range nx {
					for j := rows; j < ldy; j++ {
						if y[i*ldy+j] != 7 {
							t.Errorf("%s: padding y[%d,%d] = %v", name, i, j, y[i*ldy+j])
						}
					}
				}
			}
		}
	})
}

// TestGEMVReproducible checks, with every kernel, that each output has the
// same bits however it is computed: with 1, 2 or 3 threads, with one
// vector or in a batch of any size, and for a matrix row alone or in a
// group of four.
func TestGEMVReproducible(t *testing.T) {
	const rows, cols, nx = 1003, 777, 8
	r := rand.New(rand.NewPCG(23, 24))
	mat, x := randF32(r, rows*cols), randF32(r, nx*cols)
	backends := []*Backend{New(api.BackendOptions{Threads: 1}), New(api.BackendOptions{Threads: 2}), New(api.BackendOptions{Threads: 3})}
	forEachGEMVKernel(t, func(t *testing.T, kern *gemvKernel) {
		want := make([]float32, nx*rows)
		gemvWith(kern, serial, false, rows, cols, 1, mat, cols, x, cols, nx, 0, want, rows)
		same := func(what string, got, want []float32) {
			t.Helper()
			for j := range want {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
					t.Errorf("%s: output %d is %v, want %v", what, j, got[j], want[j])
					return
				}
			}
		}
		for _, be := range backends {
			for n := 1; n <= nx; n++ {
				got := make([]float32, n*rows)
				gemvWith(kern, be, false, rows, cols, 1, mat, cols, x, cols, n, 0, got, rows)
				same(fmt.Sprintf("threads=%d, %d vectors", be.Threads(), n), got, want[:n*rows])
			}
			one := make([]float32, rows)
			for i := range nx {
				gemvWith(kern, be, false, rows, cols, 1, mat, cols, x[i*cols:], 0, 1, 0, one, 0)
				same(fmt.Sprintf("threads=%d, vector %d alone", be.Threads(), i), one, want[i*rows:(i+1)*rows])
			}
		}
		got := make([]float32, nx)
		for _, j := range []int{0, 1, 2, 3, 500, rows - 1} {
			gemvWith(kern, serial, false, 1, cols, 1, mat[j*cols:], cols, x, cols, nx, 0, got, 1)
			for i := range nx {
				if math.Float32bits(got[i]) != math.Float32bits(want[i*rows+j]) {
					t.Errorf("row %d alone, vector %d: %v, want %v", j, i, got[i], want[i*rows+j])
				}
			}
		}
	})
}

// TestGEMVBatchedSGEMM checks that sgemm sends products with a few rows of
// A and B stored transposed to gemvBatch: up to gemvMaxBatch rows, each
// row of C has the bits of the one-row product.
func TestGEMVBatchedSGEMM(t *testing.T) {
	const n, k = 67, 301
	r := rand.New(rand.NewPCG(25, 26))
	be := New(api.BackendOptions{Threads: 2})
	for m := 2; m <= gemvMaxBatch; m++ {
		a, b := randF32(r, m*k), randF32(r, n*k)
		c0 := randF32(r, m*n)
		c := append([]float32(nil), c0...)
		sgemm(be, false, true, m, n, k, 1.5, a, k, b, k, -0.5, c, n)
		want := naiveGEMM(false, true, m, n, k, 1.5, a, k, b, k, -0.5, c0, n)
		if e := gemmRel(c, n, want, m, n); e > 1e-5 {
			t.Errorf("m=%d: relative error %.3g", m, e)
		}
		for i := range m {
			row := append([]float32(nil), c0[i*n:(i+1)*n]...)
			sgemm(be, false, true, 1, n, k, 1.5, a[i*k:], k, b, k, -0.5, row, n)
			for j := range n {
				if math.Float32bits(row[j]) != math.Float32bits(c[i*n+j]) {
					t.Errorf("m=%d: C[%d,%d] = %v, the one-row product gives %v", m, i, j, c[i*n+j], row[j])
					break
				}
			}
		}
	}
}

// BenchmarkGEMV measures the dot-product form with every kernel, in GB/s
// of the matrix read, for one vector and batches of 2 to 8, at 1 and 2
// threads: on a 2048 x 2048 matrix (16 MiB, in the L3 cache of the
// development machine) and on the 50280 x 768 head of a mamba-130m (147
// MiB, from memory). Batches also run through the packed GEMM that sgemm
// would use without gemvBatch ("packed"), for comparison.
func BenchmarkGEMV(b *testing.B) {
	r := rand.New(rand.NewPCG(27, 28))
	for _, s := range [][2]int{{2048, 2048}, {50280, 768}} {
		rows, cols := s[0], s[1]
		mat, x, y := randF32(r, rows*cols), randF32(r, 8*cols), make([]float32, 8*rows)
		for _, threads := range []int{1, 2} {
			be := New(api.BackendOptions{Threads: threads})
			for _, nx := range []int{1, 2, 4, 8} {
				bench := func(name string, call func()) {
					b.Run(fmt.Sprintf("%s/%dx%d/batch=%d/threads=%d", name, rows, cols, nx, threads), func(b *testing.B) {
						for b.Loop() {
							call()
						}
						b.ReportMetric(4*float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
					})
				}
				for _, kern := range gemvKernels {
					if kern.supported {
						bench(kern.name, func() { gemvWith(kern, be, false, rows, cols, 1, mat, cols, x, cols, nx, 0, y, rows) })
					}
				}
				if nx > 1 {
					bench("packed", func() { gemmPacked(gemmBest, be, false, true, nx, rows, cols, 1, x, cols, mat, cols, 0, y, rows) })
				}
			}
		}
	}
}

// BenchmarkMemoryBandwidth measures the bound of decoding on this machine:
// the GB/s at which 1 and 2 threads read a 512 MiB []float32, far larger
// than any cache. "gemv" sums it with the best dot-product kernel (a
// product of the array, seen as a matrix of rows of 4000 floats, with a
// vector of ones: a row length that is not a power of two, like those of
// most weights); "indexbyte" scans it with the runtime's SIMD
// bytes.IndexByte, one sequential stream per thread, a check that does not
// depend on our kernel.
func BenchmarkMemoryBandwidth(b *testing.B) {
	const cols = 4000
	const rows = (128 << 20) / cols
	mat := make([]float32, rows*cols)
	for i := range mat {
		mat[i] = float32(i % 7)
	}
	ones, y := make([]float32, cols), make([]float32, rows)
	for i := range ones {
		ones[i] = 1
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&mat[0])), 4*len(mat))
	for _, threads := range []int{1, 2} {
		be := New(api.BackendOptions{Threads: threads})
		report := func(b *testing.B) {
			b.ReportMetric(float64(len(raw))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		}
		b.Run(fmt.Sprintf("gemv/threads=%d", threads), func(b *testing.B) {
			for b.Loop() {
				gemv(be, false, rows, cols, 1, mat, cols, ones, 0, y)
			}
			report(b)
		})
		b.Run(fmt.Sprintf("indexbyte/threads=%d", threads), func(b *testing.B) {
			const chunk = 1 << 20
			scan := funcTask(func(lo, hi int) {
				if bytes.IndexByte(raw[lo*chunk:hi*chunk], 0xff) >= 0 {
					panic("no byte of the array is 0xff")
				}
			})
			for b.Loop() {
				be.run(len(raw)/chunk, 1, scan)
			}
			report(b)
		})
	}
}
