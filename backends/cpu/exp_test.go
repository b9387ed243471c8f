package cpu

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// expMaxULPs is the error bound of expVec documented in exp.go.
const expMaxULPs = 1.02

// expTestKernels are the exponential kernels compiled in and usable on
// this CPU, by name; exp_amd64_test.go adds the SIMD one.
var expTestKernels = map[string]func(d, x []float32){"generic": expGeneric}

// ulps returns the error of got in units in the last place of the exact
// result want: subnormal results count in units of 2^-149, and infinities
// and results past MaxFloat32 count as ±2^128.
func ulps(got float32, want float64) float64 {
	want = max(min(want, 0x1p128), -0x1p128)
	g := max(min(float64(got), 0x1p128), -0x1p128)
	_, e := math.Frexp(want) // |want| = f 2^e, f in [0.5, 1)
	if want == 0 {
		e = -126
	}
	return math.Abs(g-want) / math.Ldexp(1, max(e-1, -126)-23)
}

// expULPs returns the error of got = e^x in units in the last place, as
// ulps does.
func expULPs(got, x float32) float64 { return ulps(got, math.Exp(float64(x))) }

// expCheck runs kern on xs in batches and returns the largest error in ulps
// and the input where it occurs; it fails t on NaN mismatches.
func expCheck(t *testing.T, kern func(d, x []float32), xs func(yield func(float32) bool)) (worst float64, at float32) {
	t.Helper()
	const batch = 1 << 14
	in, out := make([]float32, 0, batch), make([]float32, batch)
	flush := func() {
		kern(out[:len(in)], in)
		for i, x := range in {
			y := out[i]
			if math.IsNaN(float64(x)) || math.IsNaN(float64(y)) {
				if math.IsNaN(float64(x)) != math.IsNaN(float64(y)) {
					t.Fatalf("exp(%v) = %v", x, y)
				}
				continue
			}
			if u := expULPs(y, x); u > worst {
				worst, at = u, x
			}
		}
		in = in[:0]
	}
	for x := range xs {
		if in = append(in, x); len(in) == batch {
			flush()
		}
	}
	flush()
	return worst, at
}

// bitsStride yields the float32 values whose bit patterns run from lo to
// hi (inclusive) in steps of stride.
func bitsStride(lo, hi, stride uint32) func(yield func(float32) bool) {
	return func(yield func(float32) bool) {
		for b := uint64(lo); b <= uint64(hi); b += uint64(stride) {
			if !yield(math.Float32frombits(uint32(b))) {
				return
			}
		}
	}
}

// TestExpAccuracy checks every exponential kernel against math.Exp on about
// 8.6 million inputs: every 1021st float32 bit pattern (all signs,
// magnitudes, infinities and NaNs) and every 509th float32 in [-104, 89],
// the inputs whose results are finite and not all 0.
func TestExpAccuracy(t *testing.T) {
	for name, kern := range expTestKernels {
		t.Run(name, func(t *testing.T) {
			for _, r := range []struct {
				what           string
				lo, hi, stride uint32
			}{
				{"all bit patterns", 0, math.MaxUint32, 1021},
				{"[0, 89]", 0, math.Float32bits(89), 509},
				{"[-104, -0]", 1 << 31, math.Float32bits(-104), 509},
			} {
				worst, at := expCheck(t, kern, bitsStride(r.lo, r.hi, r.stride))
				if worst > expMaxULPs {
					t.Errorf("%s: error %.3f ulp at %v (%#x), want at most %v", r.what, worst, at, math.Float32bits(at), expMaxULPs)
				}
				t.Logf("%s: at most %.3f ulp (at %v)", r.what, worst, at)
			}
		})
	}
}

// TestExpExhaustive checks every float32 in [-104, 89] (about 2^31 inputs,
// 17 minutes of CPU for both kernels); it runs only with
// DENSESSM_EXP_EXHAUSTIVE=1.
func TestExpExhaustive(t *testing.T) {
	if os.Getenv("DENSESSM_EXP_EXHAUSTIVE") != "1" {
		t.Skip("set DENSESSM_EXP_EXHAUSTIVE=1 to check every float32 in [-104, 89]")
	}
	for name, kern := range expTestKernels {
		t.Run(name, func(t *testing.T) {
			for _, r := range [][2]uint32{{0, math.Float32bits(89)}, {1 << 31, math.Float32bits(-104)}} {
				worst, at := expCheck(t, kern, bitsStride(r[0], r[1], 1))
				if worst > expMaxULPs {
					t.Errorf("error %.3f ulp at %v, want at most %v", worst, at, expMaxULPs)
				}
				t.Logf("bits %#x..%#x: at most %.4f ulp (at %v)", r[0], r[1], worst, at)
			}
		})
	}
}

// TestExpSpecial checks exact results: special values, the overflow and
// underflow thresholds, and exact powers.
func TestExpSpecial(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	maxArg := float32(88.72283) // the largest x with e^x finite
	cases := []struct{ x, want float32 }{
		{0, 1},
		{float32(math.Copysign(0, -1)), 1},
		{inf, inf},
		{-inf, 0},
		{89, inf},
		{1e30, inf},
		{math.Nextafter32(maxArg, 100), inf},
		{-104, 0},
		{-1e30, 0},
		{-103.28, 0x1p-149}, // the smallest subnormal
		{1e-10, 1},
		{-1e-10, 1},
	}
	for name, kern := range expTestKernels {
		for _, c := range cases {
			got := make([]float32, 1)
			kern(got, []float32{c.x})
			if got[0] != c.want {
				t.Errorf("%s: exp(%v) = %v, want %v", name, c.x, got[0], c.want)
			}
		}
		got := make([]float32, 2)
		kern(got, []float32{nan, maxArg})
		if !math.IsNaN(float64(got[0])) {
			t.Errorf("%s: exp(NaN) = %v", name, got[0])
		}
		if math.IsInf(float64(got[1]), 0) || got[1] < 3.4e38 {
			t.Errorf("%s: exp(%v) = %v, want finite near MaxFloat32", name, maxArg, got[1])
		}
	}
}

// TestExpSplits checks that every length and offset gives the same bits as
// one call over the whole slice (so the tails of the SIMD kernel match its
// blocks), in place too.
func TestExpSplits(t *testing.T) {
	const n = 45
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)*0.37 - 8
	}
	for name, kern := range expTestKernels {
		whole := make([]float32, n)
		kern(whole, x)
		for lo := range 9 {
			for hi := lo; hi <= n; hi++ {
				part := make([]float32, hi-lo)
				kern(part, x[lo:hi])
				inPlace := append([]float32(nil), x[lo:hi]...)
				kern(inPlace, inPlace)
				for i := range part {
					if math.Float32bits(part[i]) != math.Float32bits(whole[lo+i]) || math.Float32bits(inPlace[i]) != math.Float32bits(whole[lo+i]) {
						t.Fatalf("%s: x[%d:%d] element %d: %v (in place %v), whole slice %v", name, lo, hi, i, part[i], inPlace[i], whole[lo+i])
					}
				}
			}
		}
	}
}

// TestExpScaled checks expScaled against e^x of the float32 products, and
// that rows of every length give the bits of expScaledGeneric (so the SIMD
// kernel's row loop matches the tail path).
func TestExpScaled(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 3, 8, 16, 24} {
		const rows = 5
		a, sc := make([]float32, rows*n), make([]float32, rows)
		for i := range a {
			a[i] = float32(-16 * r.Float64())
		}
		for i := range sc {
			sc[i] = float32(6 * r.Float64())
		}
		sc[0] = 20 // products down to -320: 0 and subnormal results
		got, want := make([]float32, rows*n), make([]float32, rows*n)
		expScaled(got, a, sc, n)
		expScaledGeneric(want, a, sc, n)
		for i, v := range a {
			x := sc[i/n] * v
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d element %d: %v, generic path %v", n, i, got[i], want[i])
			}
			if u := expULPs(got[i], x); u > expMaxULPs {
				t.Errorf("n=%d: e^(%v) = %v, %.2f ulp off", n, x, got[i], u)
			}
		}
	}
}

// TestExpNegAbs checks that expNegAbs gives the bits of expVec on -|x|,
// at every length (tails included) and for the special inputs.
func TestExpNegAbs(t *testing.T) {
	inf := float32(math.Inf(1))
	x := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 88, -88, 120, -120, inf, -inf, float32(math.NaN())}
	for i := range 14 {
		x = append(x, float32(i)*1.7-11)
	}
	neg := make([]float32, len(x))
	for i, v := range x {
		neg[i] = -float32(math.Abs(float64(v)))
	}
	want := make([]float32, len(x))
	expVec(want, neg)
	for n := range len(x) + 1 {
		got := make([]float32, n)
		expNegAbs(got, x)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("length %d: e^-|%v| = %v, want %v", n, x[i], got[i], want[i])
			}
		}
	}
}

// BenchmarkExp measures the exponential kernels on 4096 floats (in L1).
func BenchmarkExp(b *testing.B) {
	x, d := make([]float32, 4096), make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)/256 - 8
	}
	for name, kern := range expTestKernels {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				kern(d, x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/float")
		})
	}
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for i, v := range x {
				d[i] = float32(math.Exp(float64(v)))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/float")
	})
}
