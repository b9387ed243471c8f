package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestLowDotsKernels runs every low-precision dot-product kernel compiled
// in and supported here on BF16 and Q8_0 matrices of every row count of a
// work item and short and long rows, for one to five vectors (beyond the
// kernels' two), against the float64 products with the matrix's values.
func TestLowDotsKernels(t *testing.T) {
	b := New(api.BackendOptions{Threads: 1})
	r := rand.New(rand.NewPCG(5, 6))
	for _, kern := range append(append([]*lowDots(nil), lowDotsArch...), lowDotsGeneric) {
		if !kern.supported {
			t.Logf("kernel %s: not supported on this CPU", kern.name)
			continue
		}
		for _, d := range []api.DType{api.BF16, api.Q8_0} {
			for _, rows := range []int{1, 3, 4, 7, 8, 9, 21} {
				for _, cols := range []int{32, 64, 96, 800} {
					if d == api.BF16 {
						cols -= rows % 8 // lengths that are not multiples of 8 too
					}
					for nx := 1; nx <= 5; nx++ {
						name := fmt.Sprintf("%s/%s/%dx%d/nx=%d", kern.name, d, rows, cols, nx)
						w32 := randT(b, r, -1, 1, rows, cols)
						w := b.Alloc(d, rows, cols).(*Tensor)
						b.Convert(w, w32)
						wide := b.Alloc(api.F32, rows, cols).(*Tensor)
						b.Convert(wide, w)
						ldx := cols + 3
						x := randT(b, r, -1, 1, nx*ldx).f32
						y := randT(b, r, -1, 1, nx*rows).f32
						old := append([]float32(nil), y...)
						lm := newLowMatrix(w, rows, cols)
						lowGemv(kern, serial, &lm, 0.5, x, ldx, nx, -1, y, rows)
						for i := range nx {
							// Q8_0 products round the vector to 16 bits per
							// block of 32: each element moves by at most
							// 1/65534 of its block's largest magnitude.
							xs := x[i*ldx : i*ldx+cols]
							step := make([]float64, cols)
							if d == api.Q8_0 {
								for p0 := 0; p0 < cols; p0 += api.Q8Block {
									var amax float64
									for _, v := range xs[p0 : p0+api.Q8Block] {
										amax = max(amax, math.Abs(float64(v)))
									}
									for p := p0; p < p0+api.Q8Block; p++ {
										step[p] = amax / 65534
									}
								}
							}
							for j := range rows {
								var s, mag, bound float64
								for p := range cols {
									wv := float64(wide.f32[j*cols+p])
									v := wv * float64(xs[p])
									s, mag, bound = s+v, mag+math.Abs(v), bound+math.Abs(wv)*step[p]
								}
								want := 0.5*s - float64(old[i*rows+j])
								if e := math.Abs(float64(y[i*rows+j]) - want); e > 0.5*bound*1.01+1e-6*(mag+1) {
									t.Fatalf("%s: vector %d row %d: got %v, want %v (error %.3g, bound %.3g)", name, i, j, y[i*rows+j], want, e, 0.5*bound+1e-6*(mag+1))
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestLowMatMulThreads checks that a low-precision product gives the same
// bits at every thread count, both through the few-row kernels and the
// packed GEMM.
func TestLowMatMulThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, d := range []api.DType{api.BF16, api.Q8_0} {
		for _, m := range []int{1, 5, 40} {
			var first []float32
			for _, threads := range []int{1, 2, 3} {
				b := New(api.BackendOptions{Threads: threads})
				r2 := rand.New(rand.NewPCG(uint64(m), 1))
				w32 := randT(b, r2, -1, 1, 200, 320)
				w := b.Alloc(d, 200, 320)
				b.Convert(w, w32)
				x := randT(b, r2, -1, 1, m, 320)
				y := b.Alloc(api.F32, m, 200).(*Tensor)
				b.MatMul(y, x, w, false, true, 1, 0)
				if first == nil {
					first = y.f32
					continue
				}
				for i, v := range y.f32 {
					if math.Float32bits(v) != math.Float32bits(first[i]) {
						t.Fatalf("%s m=%d: threads=%d gives %v at %d, threads=1 %v", d, m, threads, v, i, first[i])
					}
				}
			}
		}
	}
	_ = r
}

// BenchmarkLowGemv measures one decode product with the head of a
// mamba-130m-shaped model (50280 x 768, larger than any cache) in F32,
// BF16 and Q8_0, at one thread; SetBytes counts the matrix's bytes, so
// MB/s is the rate the weights are read at.
func BenchmarkLowGemv(b *testing.B) {
	n, k := 50280, 768
	if testing.Short() {
		n = 1024
	}
	be := New(api.BackendOptions{Threads: 1})
	r := rand.New(rand.NewPCG(1, 2))
	w32 := randT(be, r, -1, 1, n, k)
	x := randT(be, r, -1, 1, 1, k)
	y := be.Alloc(api.F32, 1, n)
	for _, d := range []api.DType{api.F32, api.BF16, api.Q8_0} {
		w := api.Tensor(w32)
		if d != api.F32 {
			w = be.Alloc(d, n, k)
			be.Convert(w, w32)
		}
		b.Run(d.String(), func(b *testing.B) {
			b.SetBytes(int64(d.Bytes(n * k)))
			for b.Loop() {
				be.MatMul(y, x, w, false, true, 1, 0)
			}
		})
	}
}

// TestQuantizeQ16 checks that quantizeQ16 (the assembly kernel where the
// CPU has it) gives the bits of quantizeQ16Go, with ties, zeros, a block
// of zeros and values of every magnitude.
func TestQuantizeQ16(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const blocks = 40
	x := make([]float32, blocks*api.Q8Block)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Pow(10, float64(i%7-3)))
	}
	clear(x[3*api.Q8Block : 4*api.Q8Block]) // a block of zeros
	x[5*api.Q8Block] = 32767                // scale 1: halves are ties
	for i := 1; i < api.Q8Block; i++ {
		x[5*api.Q8Block+i] = float32(i) - 15.5
	}
	q, d := make([]int16, len(x)), make([]float32, blocks)
	qg, dg := make([]int16, len(x)), make([]float32, blocks)
	quantizeQ16(q, d, x)
	quantizeQ16Go(qg, dg, x)
	if !slices.Equal(q, qg) || !slices.Equal(d, dg) {
		t.Fatalf("quantizeQ16 and quantizeQ16Go differ")
	}
	if q[5*api.Q8Block+1] != -14 || q[5*api.Q8Block+2] != -14 || d[3] != 0 || q[3*api.Q8Block] != 0 {
		t.Errorf("ties: %d %d (want -14 -14), zero block scale %v", q[5*api.Q8Block+1], q[5*api.Q8Block+2], d[3])
	}
}
