package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestUnaryExtremes checks the saturating functions far out (no NaN or
// Inf from an overflowing exp), the softplus threshold exactly, and the
// gradients there.
func TestUnaryExtremes(t *testing.T) {
	be := New(api.BackendOptions{Threads: 1})
	xs := []float32{-1e4, -100, -88.8, 0, 19.999, 20, 20.001, 88.8, 100, 1e4}
	x := newT(be, xs, len(xs))
	dy := newT(be, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, len(xs))
	sig := func(v float64) float64 {
		if v >= 0 {
			return 1 / (1 + math.Exp(-v))
		}
		return math.Exp(v) / (1 + math.Exp(v))
	}
	refs := map[api.UnaryOp][2]func(v float64) float64{
		api.OpSigmoid: {sig, func(v float64) float64 { return sig(v) * (1 - sig(v)) }},
		api.OpSilu:    {func(v float64) float64 { return v * sig(v) }, func(v float64) float64 { return sig(v) * (1 + v*(1-sig(v))) }},
		api.OpSoftplus: {func(v float64) float64 {
			if v > 20 {
				return v
			}
			return math.Log1p(math.Exp(v))
		}, func(v float64) float64 {
			if v > 20 {
				return 1
			}
			return sig(v)
		}},
		api.OpTanh: {math.Tanh, func(v float64) float64 { return 1 - math.Tanh(v)*math.Tanh(v) }},
	}
	for op, f := range refs {
		y, dx := nanT(be, len(xs)), nanT(be, len(xs))
		be.Unary(op, y, x)
		be.UnaryGrad(op, dx, x, dy)
		for i, v := range xs {
			wantY, wantD := float32(f[0](float64(v))), float32(f[1](float64(v)))
			if y.f32[i] != wantY {
				t.Errorf("%v(%v) = %v, want %v", op, v, y.f32[i], wantY)
			}
			if math.Abs(float64(dx.f32[i]-wantD)) > 1e-6*math.Abs(float64(wantD)) || math.IsNaN(float64(dx.f32[i])) {
				t.Errorf("%v'(%v) = %v, want %v", op, v, dx.f32[i], wantD)
			}
		}
	}
}

// TestUnarySplits runs every op on a tensor split across threads and
// checks each element is the correctly rounded float64 result.
func TestUnarySplits(t *testing.T) {
	be := New(api.BackendOptions{Threads: 3})
	x := randT(be, rand.New(rand.NewPCG(9, 1)), 0.01, 4, 3*minGrain+17)
	for _, op := range api.UnaryOps() {
		y := nanT(be, len(x.f32))
		be.Unary(op, y, x)
		want := make([]float64, len(x.f32))
		for i, v := range x.f32 {
			var w float64
			switch v := float64(v); op {
			case api.OpNeg:
				w = -v
			case api.OpExp:
				w = math.Exp(v)
			case api.OpLog:
				w = math.Log(v)
			case api.OpSqrt:
				w = math.Sqrt(v)
			case api.OpRsqrt:
				w = 1 / math.Sqrt(v)
			case api.OpSquare:
				w = v * v
			case api.OpAbs, api.OpRelu:
				w = v
			case api.OpSigmoid:
				w = 1 / (1 + math.Exp(-v))
			case api.OpSilu:
				w = v / (1 + math.Exp(-v))
			case api.OpSoftplus:
				w = math.Log1p(math.Exp(v))
			case api.OpTanh:
				w = math.Tanh(v)
			}
			want[i] = float64(float32(w))
		}
		checkClose(t, fmt.Sprint(op), y.f32, want, 1e-7)
	}
}
