package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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

// forEachKernel runs fn as a subtest for every micro-kernel compiled in,
// skipping those this CPU cannot run. Each SIMD kernel is also run in a
// "go" form, with its blocking but a pure-Go tile of the same shape, so
// that the packing and edge handling for its MR and NR are tested on any
// CPU.
func forEachKernel(t *testing.T, fn func(t *testing.T, kern *gemmKernel)) {
	kernels := slices.Clone(gemmKernels)
	for _, k := range gemmArchKernels {
		ref := *k
		ref.name, ref.supported, ref.tile = k.name+"-go", true, gemmRefTile(k.mr, k.nr)
		kernels = append(kernels, &ref)
	}
	for _, kern := range kernels {
		t.Run(kern.name, func(t *testing.T) {
			if !kern.supported {
				t.Skipf("this CPU cannot run the %s kernel", kern.name)
			}
			fn(t, kern)
		})
	}
}

// gemmRefTile returns a plain gemmKernel.tile for an mr x nr tile.
func gemmRefTile(mr, nr int) func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	return func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
		for i := range mr {
			for j := range nr {
				var s float32
				for p := range kc {
					s += a[p*mr+i] * b[p*nr+j]
				}
				v := alpha * s
				if beta != 0 {
					v += beta * c[i*ldc+j]
				}
				c[i*ldc+j] = v
			}
		}
	}
}

// TestGEMMKernels checks the list of kernels: the generic one last and
// supported, sgemm using the first supported one, and blocking that the
// packing and the work split rely on.
func TestGEMMKernels(t *testing.T) {
	if last := gemmKernels[len(gemmKernels)-1]; last != gemmGeneric || !last.supported {
		t.Fatalf("last kernel is %q (supported=%v), want the generic one", last.name, last.supported)
	}
	for _, kern := range gemmKernels {
		if kern.supported {
			if gemmBest != kern {
				t.Errorf("sgemm uses %q, want %q, the first supported kernel", gemmBest.name, kern.name)
			}
			break
		}
	}
	for _, kern := range gemmKernels {
		if kern.mr < 1 || kern.nr < 1 || kern.kc < 1 || kern.mc%kern.mr != 0 || kern.nc%kern.nr != 0 {
			t.Errorf("%s: bad blocking %+v", kern.name, *kern)
		}
	}
	t.Logf("sgemm uses the %s kernel", gemmBest.name)
}

// TestSGEMM checks sgemm with every kernel against the float64 triple loop
// over odd and prime sizes, every transpose combination, several
// alpha/beta pairs, padded leading dimensions, and 1, 2 and 3 threads.
// Cells of C outside the m x n block must stay untouched, and with
// beta == 0 the NaN that C starts with must not show.
func TestSGEMM(t *testing.T) {
	sizes := []int{1, 2, 3, 4, 5, 7, 11, 13, 17, 31, 33, 37, 64, 70}
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {-0.5, 0}, {0.75, 1}, {2, -1.25}}
	forEachKernel(t, func(t *testing.T, kern *gemmKernel) {
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
						sgemmWith(kern, be, ta, tb, m, n, k, sc.alpha, a, lda, b, ldb, sc.beta, c, ldc)
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
	})
}

// TestSGEMMLarge checks, with every kernel, shapes that cross every
// blocking boundary (KC, MC, NC, the column chunks) and the matrix-vector
// paths at sizes where they split across threads, and that 1, 2 and 3
// threads give the same bits.
func TestSGEMMLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large GEMM shapes")
	}
	type testCase struct {
		name     string
		ta, tb   bool
		m, n, k  int
		lda, ldb int
		a, b, c0 []float32
		want     []float64
	}
	// The reference is slow: compute it once for all kernels.
	var cases []testCase
	shapes := [][3]int{{200, 401, 520}, {1, 700, 600}, {700, 1, 600}, {97, 193, 257}, {29, 3100, 70}}
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				tc := testCase{name: fmt.Sprintf("%dx%dx%d transA=%v transB=%v", m, n, k, ta, tb),
					ta: ta, tb: tb, m: m, n: n, k: k, lda: k, ldb: n}
				if ta {
					tc.lda = m
				}
				if tb {
					tc.ldb = k
				}
				tc.a, tc.b, tc.c0 = randF32(r, m*k), randF32(r, k*n), randF32(r, m*n)
				tc.want = naiveGEMM(ta, tb, m, n, k, 1.5, tc.a, tc.lda, tc.b, tc.ldb, -0.5, tc.c0, n)
				cases = append(cases, tc)
			}
		}
	}
	one, two, three := New(api.BackendOptions{Threads: 1}), New(api.BackendOptions{Threads: 2}), New(api.BackendOptions{Threads: 3})
	forEachKernel(t, func(t *testing.T, kern *gemmKernel) {
		for _, tc := range cases {
			c1 := append([]float32(nil), tc.c0...)
			sgemmWith(kern, one, tc.ta, tc.tb, tc.m, tc.n, tc.k, 1.5, tc.a, tc.lda, tc.b, tc.ldb, -0.5, c1, tc.n)
			if e := gemmRel(c1, tc.n, tc.want, tc.m, tc.n); e > 1e-5 {
				t.Errorf("%s: relative error %.3g", tc.name, e)
			}
			for _, be := range []*Backend{two, three} {
				cx := append([]float32(nil), tc.c0...)
				sgemmWith(kern, be, tc.ta, tc.tb, tc.m, tc.n, tc.k, 1.5, tc.a, tc.lda, tc.b, tc.ldb, -0.5, cx, tc.n)
				for i := range c1 {
					if math.Float32bits(c1[i]) != math.Float32bits(cx[i]) {
						t.Errorf("%s: 1 and %d threads differ at %d: %v vs %v", tc.name, be.Threads(), i, c1[i], cx[i])
						break
					}
				}
			}
		}
	})
}

// TestSGEMMDegenerate checks k == 0 and alpha == 0 (C = beta*C, A and B not
// read) and empty outputs.
func TestSGEMMDegenerate(t *testing.T) {
	be := New(api.BackendOptions{Threads: 2})
	nan := float32(math.NaN())
	c := []float32{1, 2, 3, 4, 5, 6}
	sgemm(be, false, false, 2, 3, 0, 1, nil, 0, nil, 3, 2, c, 3)
	for i, v := range c {
		if v != float32(2*(i+1)) {
			t.Fatalf("k=0, beta=2: C = %v", c)
		}
	}
	sgemm(be, false, false, 2, 3, 2, 0, []float32{nan, nan, nan, nan}, 2, []float32{nan, nan, nan, nan, nan, nan}, 3, 0, c, 3)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("alpha=0, beta=0: C = %v, want zeros", c)
		}
	}
	sgemm(be, true, true, 0, 3, 2, 1, nil, 0, make([]float32, 6), 2, 0, nil, 3)
	sgemm(be, true, true, 3, 0, 2, 1, make([]float32, 6), 3, nil, 2, 0, nil, 0)
}

// BenchmarkSGEMMKernels measures each kernel on one thread (GFLOP/s) on
// the shapes of BenchmarkMatMul.
func BenchmarkSGEMMKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, kern := range gemmKernels {
		for _, s := range [][3]int{{1024, 1024, 1024}, {256, 1024, 1024}} {
			m, n, k := s[0], s[1], s[2]
			b.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, m, n, k), func(b *testing.B) {
				if !kern.supported {
					b.Skipf("this CPU cannot run the %s kernel", kern.name)
				}
				x, w, c := randF32(r, m*k), randF32(r, k*n), make([]float32, m*n)
				for b.Loop() {
					sgemmWith(kern, serial, false, false, m, n, k, 1, x, k, w, n, 0, c, n)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkGEMMTile measures each micro-kernel alone on slivers that stay
// in L1 (GFLOP/s): the ceiling of the packed GEMM.
func BenchmarkGEMMTile(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, kern := range gemmKernels {
		b.Run(kern.name, func(b *testing.B) {
			if !kern.supported {
				b.Skipf("this CPU cannot run the %s kernel", kern.name)
			}
			const kc = 128
			a, w, c := randF32(r, kern.mr*kc), randF32(r, kc*kern.nr), make([]float32, kern.mr*kern.nr)
			for b.Loop() {
				kern.tile(kc, a, w, c, kern.nr, 1, 1)
			}
			b.ReportMetric(2*float64(kern.mr*kern.nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestGEMMSelfTest checks that every kernel this CPU runs passes the
// start-up self-test and that a wrong kernel fails it.
func TestGEMMSelfTest(t *testing.T) {
	for _, k := range gemmKernels {
		if k.supported && !gemmSelfTest(k) {
			t.Errorf("kernel %s fails its self-test", k.name)
		}
	}
	broken := *gemmGeneric
	broken.tile = func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
		gemmGeneric.tile(kc, a, b, c, ldc, alpha*1.001, beta)
	}
	if gemmSelfTest(&broken) {
		t.Error("a kernel off by 0.1% passes the self-test")
	}
}

// TestGEMMPackCols checks the transposing packer (and its SIMD path for
// whole slivers of a multiple of 16 or 6) against its definition:
// d[p*w + x] = src[x*ld + p] for x < n, zero for n <= x < w.
func TestGEMMPackCols(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, w := range []int{6, 12, 16, 32} {
		for _, n := range []int{w, w - 3} {
			for _, kc := range []int{1, 7, 8, 13, 64, 259} {
				ld := kc + 5
				src := randF32(r, n*ld)
				d := randF32(r, w*kc) // garbage the packer must overwrite
				gemmPackCols(d, src, ld, w, n, kc)
				for p := range kc {
					for x := range w {
						want := float32(0)
						if x < n {
							want = src[x*ld+p]
						}
						if d[p*w+x] != want {
							t.Fatalf("w=%d n=%d kc=%d: d[%d*w+%d] = %v, want %v", w, n, kc, p, x, d[p*w+x], want)
						}
					}
				}
			}
		}
	}
}

// TestGEMMPackRuns checks the copying packer (and its SIMD path for runs of
// a multiple of 8) against its definition: element (p, c) of sliver s,
// src[p*ld + s*w + c], goes to dst[s*w*kc + p*w + c], zero past column n.
func TestGEMMPackRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, w := range []int{6, 12, 16, 32} {
		for _, n := range []int{3 * w, 3*w - 5, w - 1} {
			for _, kc := range []int{1, 7, 8, 13, 64, 259} {
				ld := n + 3
				slivers := ceilDiv(n, w)
				src := randF32(r, kc*ld)
				d := randF32(r, slivers*w*kc)
				gemmPackRuns(d, src, ld, w, n, kc)
				for s := range slivers {
					for p := range kc {
						for c := range w {
							want := float32(0)
							if j := s*w + c; j < n {
								want = src[p*ld+j]
							}
							if got := d[s*w*kc+p*w+c]; got != want {
								t.Fatalf("w=%d n=%d kc=%d: sliver %d (%d, %d) = %v, want %v", w, n, kc, s, p, c, got, want)
							}
						}
					}
				}
			}
		}
	}
}

// BenchmarkGEMMPackRuns measures the copying packer on a row-major B
// 1024 floats wide, as gemmRect packs half of it for one of two workers
// (GB/s read).
func BenchmarkGEMMPackRuns(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const ld, n = 1024, 512
	src := randF32(r, ld*ld)
	for _, w := range []int{16, 32} {
		b.Run(fmt.Sprintf("w=%d", w), func(b *testing.B) {
			const kc = 256
			dst := make([]float32, kc*n)
			for b.Loop() {
				for p0 := 0; p0 < ld; p0 += kc {
					gemmPackRuns(dst, src[p0*ld:], ld, w, n, kc)
				}
			}
			b.ReportMetric(float64(n*ld*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
