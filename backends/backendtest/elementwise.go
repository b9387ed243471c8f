package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("Fill", testFill)
	register("Copy", testCopy)
	register("Affine", testAffine)
	register("Unary", testUnary)
	register("UnaryGrad", testUnaryGrad)
}

// elementwiseShapes are the shapes the element-wise groups run on: scalar,
// empty, size 1, odd, and one large enough to be split across threads.
var elementwiseShapes = [][]int{{}, {0}, {1}, {7}, {3, 0, 2}, {3, 5, 2}, {37, 29}}

func testFill(t *testing.T, b api.Backend) {
	r := newRand(1)
	for _, shape := range elementwiseShapes {
		for _, v := range []float32{0, -1.25, 3e38, float32(math.Inf(-1)), float32(math.NaN())} {
			runSub(t, fmt.Sprintf("%s/%v", shapeName(shape), v), func(t *testing.T) {
				dst := upload(b, randVals(r, numel(shape), -9, 9), shape...)
				b.Fill(dst, v)
				checkExact(t, "fill", download(dst), filled(numel(shape), float64(v)))
			})
		}
	}
}

func testCopy(t *testing.T, b api.Backend) {
	r := newRand(2)
	pairs := []struct{ src, dst []int }{
		{[]int{3, 4}, []int{12}},
		{[]int{5, 7, 3}, []int{3, 35}},
		{[]int{}, []int{1}},
		{[]int{0}, []int{2, 0}},
		{[]int{41, 37}, []int{41, 37}},
	}
	for _, d := range storageDTypes {
		for _, p := range pairs {
			runSub(t, d.String()+"/"+shapeName(p.src), func(t *testing.T) {
				want := randBytes(r, numel(p.src)*d.Size())
				src := uploadRaw(b, d, want, p.src...)
				dst := uploadRaw(b, d, randBytes(r, numel(p.dst)*d.Size()), p.dst...)
				b.Copy(dst, src)
				checkBytes(t, "copy", downloadRaw(dst), want)
				checkBytes(t, "copy source unchanged", downloadRaw(src), want)
			})
		}
	}
}

func testAffine(t *testing.T, b api.Backend) {
	r := newRand(3)
	for _, shape := range elementwiseShapes {
		for _, p := range []struct{ scale, shift float32 }{{2.5, -1}, {-0.5, 0.25}, {1, 0}, {0, 3}} {
			runSub(t, fmt.Sprintf("%s/scale=%v/shift=%v", shapeName(shape), p.scale, p.shift), func(t *testing.T) {
				x := f32(randVals(r, numel(shape), -4, 4))
				want := make([]float64, len(x))
				for i, v := range x {
					want[i] = v*float64(p.scale) + float64(p.shift)
				}
				xt := upload(b, x, shape...)
				dst := upload(b, filled(len(x), math.NaN()), shape...)
				b.Affine(dst, xt, p.scale, p.shift)
				checkRel(t, "affine", download(dst), want, RelTol)
				checkExact(t, "affine input unchanged", download(xt), x)
				b.Affine(xt, xt, p.scale, p.shift)
				checkRel(t, "affine in place", download(xt), want, RelTol)
			})
		}
	}
}

// valRange is a half-open interval [lo, hi) of test inputs.
type valRange struct{ lo, hi float64 }

// unarySpec is the float64 reference of one UnaryOp and where to test it.
type unarySpec struct {
	f func(x float64) float64
	// ranges are the forward test inputs; each range is checked as its own
	// tensor, so that the max-norm tolerance also holds for the tails
	// (tiny exp and sigmoid values, huge ones).
	ranges []valRange
	// special values are added to the first forward range: exact points,
	// thresholds, saturation at ±30 and ±100 (which must not turn into NaN
	// or Inf), huge values.
	special []float64
	// gradSpecial values are added to the first gradient range; they leave
	// out kinks, poles and values so large that they swamp the finite
	// differences of the others.
	gradSpecial []float64
	// gradRanges are where finite differences are reliable: away from
	// kinks and from the poles of log and rsqrt.
	gradRanges []valRange
}

func sigmoid64(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// unarySpecs holds the reference of every UnaryOp, from the doc comments of
// api.UnaryOp.
var unarySpecs = map[api.UnaryOp]unarySpec{
	api.OpNeg: {
		f:          func(x float64) float64 { return -x },
		ranges:     []valRange{{-10, 10}},
		special:    []float64{0, 3e38, -3e38},
		gradRanges: []valRange{{-3, 3}},
	},
	api.OpExp: {
		f:           math.Exp,
		ranges:      []valRange{{-5, 5}, {-80, -60}, {60, 80}},
		special:     []float64{0, 1},
		gradSpecial: []float64{0, 1},
		gradRanges:  []valRange{{-5, 5}, {-80, -60}},
	},
	api.OpLog: {
		f:           math.Log,
		ranges:      []valRange{{1e-3, 1}, {1, 1e4}, {1e-30, 1e-20}},
		special:     []float64{1},
		gradSpecial: []float64{1},
		gradRanges:  []valRange{{0.05, 20}},
	},
	api.OpSqrt: {
		f:           math.Sqrt,
		ranges:      []valRange{{0, 1}, {1, 1e6}, {1e-30, 1e-20}},
		special:     []float64{0, 1, 4},
		gradSpecial: []float64{1, 4},
		gradRanges:  []valRange{{0.05, 20}},
	},
	api.OpRsqrt: {
		f:           func(x float64) float64 { return 1 / math.Sqrt(x) },
		ranges:      []valRange{{1e-4, 1}, {1, 1e6}, {1e-30, 1e-20}},
		special:     []float64{1, 4},
		gradSpecial: []float64{1, 4},
		gradRanges:  []valRange{{0.05, 20}},
	},
	api.OpSquare: {
		f:           func(x float64) float64 { return x * x },
		ranges:      []valRange{{-10, 10}},
		special:     []float64{0},
		gradSpecial: []float64{0},
		gradRanges:  []valRange{{-3, 3}},
	},
	api.OpAbs: {
		f:          math.Abs,
		ranges:     []valRange{{-10, 10}},
		special:    []float64{0},
		gradRanges: []valRange{{-3, -0.01}, {0.01, 3}},
	},
	api.OpSigmoid: {
		f:           sigmoid64,
		ranges:      []valRange{{-8, 8}, {-30, -20}, {20, 30}},
		special:     []float64{-100, -30, 0, 30, 100},
		gradSpecial: []float64{-100, -30, 0, 30, 100},
		gradRanges:  []valRange{{-8, 8}, {-30, -20}},
	},
	api.OpSilu: {
		f:           func(x float64) float64 { return x * sigmoid64(x) },
		ranges:      []valRange{{-8, 8}, {-30, -20}, {20, 30}},
		special:     []float64{-100, -30, 0, 30, 100},
		gradSpecial: []float64{-100, -30, 0, 30, 100},
		gradRanges:  []valRange{{-8, 8}, {-30, -20}, {20, 30}},
	},
	api.OpSoftplus: {
		f: func(x float64) float64 {
			if x > 20 {
				return x
			}
			return math.Log1p(math.Exp(x))
		},
		ranges:      []valRange{{-10, 10}, {15, 25}, {20, 100}, {-30, -20}},
		special:     []float64{-100, -30, 0, 19.999, 20, 20.001, 30, 100},
		gradSpecial: []float64{-100, -30, 0, 19.999, 20, 20.001, 30, 100},
		gradRanges:  []valRange{{-10, 10}, {15, 25}, {-30, -20}},
	},
	api.OpTanh: {
		f:           math.Tanh,
		ranges:      []valRange{{-5, 5}, {-1e-3, 1e-3}, {10, 20}},
		special:     []float64{-100, -30, 0, 30, 100},
		gradSpecial: []float64{-100, -30, 0, 30, 100},
		gradRanges:  []valRange{{-4, 4}},
	},
	api.OpRelu: {
		f:          func(x float64) float64 { return max(x, 0) },
		ranges:     []valRange{{-5, 5}},
		special:    []float64{0},
		gradRanges: []valRange{{-3, -0.01}, {0.01, 3}},
	},
}

// unaryInputs draws n inputs in rg, adds special when first, and rounds
// them to float32.
func unaryInputs(seed uint64, n int, rg valRange, special []float64, first bool) []float64 {
	x := randVals(newRand(seed), n, rg.lo, rg.hi)
	if first {
		x = append(x, special...)
	}
	return f32(x)
}

func testUnary(t *testing.T, b api.Backend) {
	for _, op := range api.UnaryOps() {
		spec, ok := unarySpecs[op]
		if !ok {
			t.Errorf("the suite has no reference for unary op %v", op)
			continue
		}
		runSub(t, op.String(), func(t *testing.T) {
			for i, rg := range spec.ranges {
				x := unaryInputs(uint64(100*op)+uint64(i), 1021, rg, spec.special, i == 0)
				want := make([]float64, len(x))
				for j, v := range x {
					want[j] = spec.f(v)
				}
				xt := upload(b, x, len(x))
				dst := upload(b, filled(len(x), math.NaN()), len(x))
				b.Unary(op, dst, xt)
				checkRel(t, op.String(), download(dst), want, RelTol)
				b.Unary(op, xt, xt)
				checkRel(t, op.String()+" in place", download(xt), want, RelTol)
			}
			// Scalar and empty tensors.
			for _, shape := range [][]int{{}, {0}, {2, 0}} {
				x := unaryInputs(uint64(100*op)+50, numel(shape), spec.ranges[0], nil, false)
				dst := b.Alloc(api.F32, shape...)
				b.Unary(op, dst, upload(b, x, shape...))
				want := make([]float64, len(x))
				for j, v := range x {
					want[j] = spec.f(v)
				}
				checkRel(t, op.String()+" "+shapeName(shape), download(dst), want, RelTol)
			}
		})
	}
}

func testUnaryGrad(t *testing.T, b api.Backend) {
	for _, op := range api.UnaryOps() {
		spec, ok := unarySpecs[op]
		if !ok {
			t.Errorf("the suite has no reference for unary op %v", op)
			continue
		}
		runSub(t, op.String(), func(t *testing.T) {
			f := func(in [][]float64) []float64 {
				y := make([]float64, len(in[0]))
				for j, v := range in[0] {
					y[j] = spec.f(v)
				}
				return y
			}
			for i, rg := range spec.gradRanges {
				x := unaryInputs(uint64(100*op)+10+uint64(i), 61, rg, spec.gradSpecial, i == 0)
				dy := f32(randVals(newRand(uint64(op)), len(x), -1, 1))
				want := numericGrad(f, [][]float64{x}, dy)[0]
				dx := upload(b, filled(len(x), math.NaN()), 1, len(x))
				b.UnaryGrad(op, dx, upload(b, x, 1, len(x)), upload(b, dy, 1, len(x)))
				checkRel(t, op.String()+" gradient", download(dx), want, GradTol)
			}
		})
	}
	// The documented values at the kinks, which finite differences cannot
	// check.
	for _, op := range []api.UnaryOp{api.OpAbs, api.OpRelu} {
		runSub(t, op.String()+"/at_zero", func(t *testing.T) {
			x := []float64{0, math.Copysign(0, -1)}
			dx := b.Alloc(api.F32, 2)
			b.UnaryGrad(op, dx, upload(b, x, 2), upload(b, []float64{1.5, -2}, 2))
			got := download(dx)
			if got[0] != 0 || got[1] != 0 {
				t.Errorf("%v gradient at ±0 is %v, want 0", op, got)
			}
		})
	}
}
