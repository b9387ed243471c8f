package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("LowPrecisionWeights", testLowPrecisionWeights)
	register("LowPrecisionMatMul", testLowPrecisionMatMul)
}

// lowWeights converts the rows x cols values v (float32-exact) to a
// weight tensor of dtype d with Convert, and returns it with the values it
// holds, read back through Convert to F32.
func lowWeights(b api.Backend, d api.DType, v []float64, rows, cols int) (api.Tensor, []float64) {
	w := b.Alloc(d, rows, cols)
	b.Convert(w, upload(b, v, rows, cols))
	back := b.Alloc(api.F32, rows, cols)
	b.Convert(back, w)
	return w, download(back)
}

// checkQ8Values checks what Convert made of v in Q8_0 (got) against the
// format: in each block of 32, with amax the largest magnitude and
// d = amax / 127 rounded to half precision, every value is d times an
// integer in [-127, 127] within half a step of v, and a value of
// magnitude amax is ±127 d.
func checkQ8Values(t *testing.T, what string, got, v []float64) {
	t.Helper()
	for blk := 0; blk < len(v); blk += api.Q8Block {
		vs, gs := v[blk:blk+api.Q8Block], got[blk:blk+api.Q8Block]
		var amax float64
		for _, x := range vs {
			amax = max(amax, math.Abs(x))
		}
		d := refF16Value(api.Float32ToFloat16(float32(amax / 127)))
		for i, x := range vs {
			if d == 0 {
				if gs[i] != 0 {
					t.Fatalf("%s: element %d of a zero block is %v", what, blk+i, gs[i])
				}
				continue
			}
			q := gs[i] / d
			// The integer is computed with the unrounded scale, so the
			// value is within half a step of that scale plus the
			// rounding of the scale times 127.
			slack := 0.5*amax/127 + 127*math.Abs(d-amax/127) + 1e-7*amax
			if q != math.Round(q) || math.Abs(q) > 127 || math.Abs(gs[i]-x) > slack {
				t.Fatalf("%s: element %d: %v became %v (scale %v, q %v)", what, blk+i, x, gs[i], d, q)
			}
			if math.Abs(x) == amax && math.Abs(q) != 127 {
				t.Fatalf("%s: element %d, the block's largest, got q = %v, want ±127", what, blk+i, q)
			}
		}
	}
}

// testLowPrecisionWeights checks the weight storage: F32 to BF16 and
// Q8_0 with Convert, back to F32, Gather from a BF16 or Q8_0 table, and
// the shapes Q8_0 refuses.
func testLowPrecisionWeights(t *testing.T, b api.Backend) {
	const rows, cols = 7, 96
	r := newRand(91)
	v := f32(randVals(r, rows*cols, -2, 2))
	for i := 0; i < cols; i++ {
		v[3*cols+i] = 0 // a row of zero blocks
	}
	v[5*cols+40] = 7.5 // one block with a large value
	ids := []int32{4, 0, 3, 5, 4, 6}
	for _, d := range []api.DType{api.BF16, api.Q8_0} {
		runSub(t, d.String(), func(t *testing.T) {
			w, got := lowWeights(b, d, v, rows, cols)
			if d == api.BF16 {
				for i, x := range v {
					if want := float64(api.BFloat16ToFloat32(refBF16Bits(float32(x)))); got[i] != want {
						t.Fatalf("bf16 element %d: %v became %v, want %v", i, x, got[i], want)
					}
				}
			} else {
				checkQ8Values(t, "q8_0", got, v)
			}
			rowsOut := b.Alloc(api.F32, len(ids), cols)
			b.Gather(rowsOut, w, uploadIDs(b, ids, len(ids)))
			want := make([]float64, 0, len(ids)*cols)
			for _, id := range ids {
				want = append(want, got[int(id)*cols:int(id+1)*cols]...)
			}
			checkExact(t, "gather from "+d.String(), download(rowsOut), want)
		})
	}
	mustPanicWith(t, "Q8_0 alloc with a last axis of 33", func() { b.Alloc(api.Q8_0, 2, 33) }, api.ErrShape)
	q := b.Alloc(api.Q8_0, 2, 32)
	mustPanicWith(t, "Q8_0 as the untransposed operand", func() {
		b.MatMul(b.Alloc(api.F32, 3, 32), b.Alloc(api.F32, 3, 2), q, false, false, 1, 0)
	}, api.ErrDType)
	mustPanicWith(t, "Q8_0 with a wrong inner size", func() {
		b.MatMul(b.Alloc(api.F32, 3, 2), b.Alloc(api.F32, 3, 31), q, false, true, 1, 0)
	}, api.ErrShape)
}

// lowTol is the relative error allowed to x W^T for each weight dtype.
// Q8_0 products may round x to 16 bits per block of 32 (the CPU
// backend's do, to multiply integers), which moves each element by up to
// 1/65534 of its block's largest magnitude: far below the error of the
// 8-bit weights themselves, but above RelTol.
var lowTol = map[api.DType]float64{api.BF16: RelTol, api.Q8_0: 1e-4}

// testLowPrecisionMatMul checks x W^T with W in BF16 and Q8_0 against the
// float64 product with the values W holds: the few-row products of
// decoding (one to eight rows) and the packed GEMM of longer inputs, with
// alpha and beta, and a batch of rows [2, m, k].
func testLowPrecisionMatMul(t *testing.T, b api.Backend) {
	type size struct{ m, k, n int }
	cases := map[api.DType][]size{
		api.BF16: {{1, 5, 3}, {1, 8, 1}, {2, 37, 9}, {3, 64, 17}, {8, 100, 33}, {9, 37, 5}, {70, 300, 130}},
		api.Q8_0: {{1, 32, 3}, {1, 32, 1}, {2, 96, 9}, {3, 64, 17}, {8, 288, 33}, {9, 32, 5}, {70, 288, 130}},
	}
	for _, d := range []api.DType{api.BF16, api.Q8_0} {
		for _, s := range cases[d] {
			runSub(t, fmt.Sprintf("%s/%dx%dx%d", d, s.m, s.k, s.n), func(t *testing.T) {
				r := newRand(uint64(s.m*7919 + s.k*31 + s.n))
				w, wv := lowWeights(b, d, f32(randVals(r, s.n*s.k, -1, 1)), s.n, s.k)
				for i, sc := range mmScalars {
					batch := []int{}
					if i == 2 {
						batch = []int{2}
					}
					as := append(append([]int(nil), batch...), s.m, s.k)
					ds := append(append([]int(nil), batch...), s.m, s.n)
					x := f32(randVals(r, numel(as), -1, 1))
					old := filled(numel(ds), math.NaN())
					if sc.beta != 0 {
						old = f32(randVals(r, numel(ds), -1, 1))
					}
					// The batch shares W: one tall product of its rows.
					want := refMatMul(mmOperand{x, []int{numel(as) / s.k, s.k}}, mmOperand{wv, []int{s.n, s.k}}, false, true,
						float64(sc.alpha), float64(sc.beta), old)
					dst := upload(b, old, ds...)
					b.MatMul(dst, upload(b, x, as...), w, false, true, sc.alpha, sc.beta)
					checkRel(t, fmt.Sprintf("matmul x%v %s[%d %d]^T alpha=%v beta=%v", as, d, s.n, s.k, sc.alpha, sc.beta),
						download(dst), want, lowTol[d])
				}
			})
		}
	}
}
