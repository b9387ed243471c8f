package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// unaryMaxULPs bounds the error of the exponential-based ops (exp.go and
// elementwise.go document it), in units in the last place.
var unaryMaxULPs = map[api.UnaryOp]float64{
	api.OpExp: expMaxULPs, api.OpSigmoid: 2, api.OpSilu: 2, api.OpSoftplus: 2,
}

// sigmoid64 returns sigmoid(v) and 1 - sigmoid(v) in float64, without
// cancellation.
func sigmoid64(v float64) (s, c float64) {
	e := math.Exp(-math.Abs(v))
	if v < 0 {
		return e / (1 + e), 1 / (1 + e)
	}
	return 1 / (1 + e), e / (1 + e)
}

// unaryRef returns op(v) and op'(v) in float64.
func unaryRef(op api.UnaryOp, v float64) (y, dy float64) {
	s, c := sigmoid64(v)
	switch op {
	case api.OpNeg:
		return -v, -1
	case api.OpExp:
		return math.Exp(v), math.Exp(v)
	case api.OpLog:
		return math.Log(v), 1 / v
	case api.OpSqrt:
		return math.Sqrt(v), 0.5 / math.Sqrt(v)
	case api.OpRsqrt:
		return 1 / math.Sqrt(v), -0.5 / (v * math.Sqrt(v))
	case api.OpSquare:
		return v * v, 2 * v
	case api.OpAbs:
		return math.Abs(v), math.Copysign(1, v)
	case api.OpSigmoid:
		return s, s * c
	case api.OpSilu:
		return v * s, s * (1 + v*c)
	case api.OpSoftplus:
		if v > 20 {
			return v, 1
		}
		return max(v, 0) + math.Log1p(math.Exp(-math.Abs(v))), s
	case api.OpTanh:
		t := math.Tanh(v)
		return t, 1 - t*t
	case api.OpRelu:
		if v > 0 {
			return v, 1
		}
		return 0, 0
	}
	panic(fmt.Sprint("no reference for ", op))
}

// TestUnaryExtremes checks the saturating functions far out (no NaN or
// Inf from an overflowing exp), the softplus threshold exactly, and the
// gradients there.
func TestUnaryExtremes(t *testing.T) {
	be := New(api.BackendOptions{Threads: 1})
	xs := []float32{-1e4, -100, -88.8, -87, 0, 19.999, 20, 20.001, 87, 88.8, 100, 1e4}
	x := newT(be, xs, len(xs))
	ones := make([]float32, len(xs))
	for i := range ones {
		ones[i] = 1
	}
	dy := newT(be, ones, len(xs))
	for _, op := range []api.UnaryOp{api.OpSigmoid, api.OpSilu, api.OpSoftplus, api.OpTanh} {
		y, dx := nanT(be, len(xs)), nanT(be, len(xs))
		be.Unary(op, y, x)
		be.UnaryGrad(op, dx, x, dy)
		for i, v := range xs {
			wantY, wantD := unaryRef(op, float64(v))
			if u := ulps(y.f32[i], wantY); u > unaryMaxULPs[op] {
				t.Errorf("%v(%v) = %v, want %v (%.2f ulp off)", op, v, y.f32[i], float32(wantY), u)
			}
			// 1e-6 relative, or 2 ulp where the gradient is subnormal.
			if math.Abs(float64(dx.f32[i])-wantD) > 1e-6*math.Abs(wantD) && ulps(dx.f32[i], wantD) > 2 ||
				math.IsNaN(float64(dx.f32[i])) {
				t.Errorf("%v'(%v) = %v, want %v", op, v, dx.f32[i], wantD)
			}
		}
	}
}

// TestUnaryAccuracy runs every op on tensors split across threads and
// checks each element: the ops evaluated in float64 give the correctly
// rounded float64 result, the exponential-based ones are within
// unaryMaxULPs of it; and one thread gives the same bits as three.
func TestUnaryAccuracy(t *testing.T) {
	one, three := New(api.BackendOptions{Threads: 1}), New(api.BackendOptions{Threads: 3})
	r := rand.New(rand.NewPCG(9, 1))
	for _, op := range api.UnaryOps() {
		ranges := [][2]float64{{0.01, 4}}
		switch op {
		case api.OpLog, api.OpSqrt, api.OpRsqrt:
			ranges = append(ranges, [2]float64{1e-6, 1e6})
		default:
			ranges = append(ranges, [2]float64{-20, 20}, [2]float64{-110, 110})
		}
		for _, rg := range ranges {
			what := fmt.Sprintf("%v on [%v, %v]", op, rg[0], rg[1])
			x := randT(three, r, rg[0], rg[1], 3*minGrain+17)
			y, y1 := nanT(three, len(x.f32)), nanT(one, len(x.f32))
			three.Unary(op, y, x)
			one.Unary(op, y1, x)
			checkSameBits(t, what+", 1 and 3 threads", y1.f32, y.f32)
			var worst float64
			for i, v := range x.f32 {
				want, _ := unaryRef(op, float64(v))
				if bound, ok := unaryMaxULPs[op]; ok {
					if u := ulps(y.f32[i], want); u > worst {
						worst = u
						if u > bound {
							t.Errorf("%s: %v(%v) = %v, %.2f ulp off", what, op, v, y.f32[i], u)
							break
						}
					}
				} else if y.f32[i] != float32(want) {
					t.Errorf("%s: %v(%v) = %v, want %v", what, op, v, y.f32[i], float32(want))
					break
				}
			}
			if _, ok := unaryMaxULPs[op]; ok {
				t.Logf("%s: at most %.3f ulp", what, worst)
			}
		}
	}
}

// TestUnaryGradSplits checks UnaryGrad against the float64 derivative to
// 1e-6 relative (element by element, outside the ranges where the
// reference's own rounding is that large), and that one thread gives the
// same bits as three.
func TestUnaryGradSplits(t *testing.T) {
	one, three := New(api.BackendOptions{Threads: 1}), New(api.BackendOptions{Threads: 3})
	r := rand.New(rand.NewPCG(10, 1))
	x := randT(three, r, 0.01, 30, 3*minGrain+17)
	for i := range x.f32 {
		if i%2 == 1 && i%3 != 0 {
			x.f32[i] = -x.f32[i]
		}
	}
	dy := randT(three, r, -1, 1, len(x.f32))
	for _, op := range []api.UnaryOp{api.OpExp, api.OpSigmoid, api.OpSilu, api.OpSoftplus, api.OpTanh} {
		g, g1 := nanT(three, len(x.f32)), nanT(one, len(x.f32))
		three.UnaryGrad(op, g, x, dy)
		one.UnaryGrad(op, g1, x, dy)
		checkSameBits(t, fmt.Sprint(op, " gradient, 1 and 3 threads"), g1.f32, g.f32)
		for i, v := range x.f32 {
			_, d := unaryRef(op, float64(v))
			want := float64(dy.f32[i]) * d
			if op == api.OpSilu && math.Abs(float64(v)+1.28) < 0.1 {
				continue // silu' has a zero near -1.278: only absolute accuracy there
			}
			if diff := math.Abs(float64(g.f32[i]) - want); diff > 1e-6*math.Abs(want) && diff > 1e-30 {
				t.Errorf("%v'(%v) * %v = %v, want %v", op, v, dy.f32[i], g.f32[i], want)
				break
			}
		}
	}
}

// TestLog1pUnit checks log1pUnit against math.Log1p on [0, 1] to its
// documented 1.6e-9 relative.
func TestLog1pUnit(t *testing.T) {
	const n = 1 << 20
	for i := range n + 1 {
		u := float64(i) / n
		if i == 1 {
			u = 1e-300 // and tiny inputs
		}
		got, want := log1pUnit(u), math.Log1p(u)
		if math.Abs(got-want) > 1.6e-9*want {
			t.Fatalf("log1pUnit(%v) = %v, want %v", u, got, want)
		}
	}
}

// BenchmarkUnary measures the exponential-based ops on the [T, E] = [512,
// 1536] activations of a mamba-130m layer, on one thread.
func BenchmarkUnary(b *testing.B) {
	be := New(api.BackendOptions{Threads: 1})
	x := randT(be, rand.New(rand.NewPCG(1, 2)), -6, 6, 512, 1536)
	y := be.Alloc(api.F32, 512, 1536)
	for _, op := range []api.UnaryOp{api.OpExp, api.OpSigmoid, api.OpSilu, api.OpSoftplus, api.OpTanh} {
		b.Run(op.String(), func(b *testing.B) {
			for b.Loop() {
				be.Unary(op, y, x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x.f32)), "ns/elem")
		})
	}
}
