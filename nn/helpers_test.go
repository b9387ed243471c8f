package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// Finite differences. Gradients from Backward are compared with the
// fourth-order central difference
//
//	g ≈ (-L(x+2h) + 8 L(x+h) - 8 L(x-h) + L(x-2h)) / (12 h)
//
// of the float32 forward pass, accumulated in float64, with step fdStep on
// inputs of size O(1). Its truncation error (h^4 L^(5)/30, about 5e-9) is far
// below the float32 rounding noise of L (about 1e-6 absolute for the graphs
// here), which the difference amplifies by 1.5/h to about 1e-4 absolute.
// Inputs are kept at least 0.1 away from kinks (abs, relu) so that no stencil
// point crosses one. A gradient passes when max|ad - fd| / max|fd| over the
// tensor is below opTol. (Whole graphs are checked against float64
// references instead: see reference_test.go.)
const (
	fdStep = 1e-2
	opTol  = 3e-3
)

// newBackend returns the CPU backend with two threads, so that the kernels'
// parallel splits are exercised.
func newBackend() api.Backend { return cpu.New(api.BackendOptions{Threads: 2}) }

// newRand returns a deterministic generator for one test.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0xdecaf)) }

// uniform returns a new F32 tensor with values uniform in [lo, hi).
func uniform(b api.Backend, r *rand.Rand, lo, hi float64, shape ...int) api.Tensor {
	data := make([]float32, api.Shape(shape).NumElements())
	for i := range data {
		data[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return api.FromFloat32s(b, data, shape...)
}

// awayFromZero returns a new F32 tensor with values of random sign and
// magnitude uniform in [0.1, 1), so that kinks at 0 are out of the
// finite-difference stencil's reach.
func awayFromZero(b api.Backend, r *rand.Rand, shape ...int) api.Tensor {
	data := make([]float32, api.Shape(shape).NumElements())
	for i := range data {
		data[i] = float32(0.1 + 0.9*r.Float64())
		if r.IntN(2) == 0 {
			data[i] = -data[i]
		}
	}
	return api.FromFloat32s(b, data, shape...)
}

// leaf returns a leaf Var requiring a gradient with values uniform in
// [lo, hi).
func leaf(b api.Backend, r *rand.Rand, lo, hi float64, shape ...int) *Var {
	return NewVar(uniform(b, r, lo, hi, shape...), true)
}

// constant returns a leaf Var that needs no gradient, uniform in [-1, 1).
func constant(b api.Backend, r *rand.Rand, shape ...int) *Var {
	return NewVar(uniform(b, r, -1, 1, shape...), false)
}

// setFloat32s overwrites an F32 tensor with data.
func setFloat32s(t api.Tensor, data []float32) {
	raw := make([]byte, 4*len(data))
	if err := api.EncodeFloat32(raw, api.F32, data); err != nil {
		panic(err)
	}
	t.Backend().Upload(t, raw)
}

// scalar reads the single value of a one-element Var.
func scalar(v *Var) float64 { return float64(api.Float32s(v.Value())[0]) }

// weightedSum returns sum(y * w): a scalar loss whose gradient with respect
// to y is the fixed random w, so that every element of y matters.
func weightedSum(tp *Tape, y, w *Var) *Var { return tp.Sum(tp.Mul(y, w)) }

// named is a Var to differentiate, with a name for messages.
type named struct {
	name string
	v    *Var
}

// checkGrads compares the gradient Backward gives each of vars (leaves;
// their gradients are zeroed first) with finite differences of loss, a
// function that builds the scalar loss on a tape from the current values.
func checkGrads(t *testing.T, b api.Backend, vars []named, tol float64, loss func(tp *Tape) *Var) {
	t.Helper()
	for _, nv := range vars {
		nv.v.ZeroGrad()
	}
	tp := NewTape(b)
	tp.Backward(loss(tp))
	eval := func() float64 { return scalar(loss(NewInferenceTape(b))) }
	for _, nv := range vars {
		if nv.v.Grad() == nil {
			t.Errorf("%s: no gradient", nv.name)
			continue
		}
		got := api.Float32s(nv.v.Grad())
		data := api.Float32s(nv.v.Value())
		want := make([]float64, len(data))
		for i, x := range data {
			at := func(k float64) float64 {
				data[i] = float32(float64(x) + k*fdStep)
				setFloat32s(nv.v.Value(), data)
				return eval()
			}
			want[i] = (-at(2) + 8*at(1) - 8*at(-1) + at(-2)) / (12 * fdStep)
			data[i] = x
			setFloat32s(nv.v.Value(), data)
		}
		if e, i := relErr(got, want); e > tol || math.IsNaN(e) {
			t.Errorf("%s: gradient relative error %.3g > %.0e (worst at %d: backward %.6g, finite difference %.6g)",
				nv.name, e, tol, i, got[i], want[i])
		}
	}
}

// relErr returns max|got-want| / max|want| (the absolute error when want is
// all zero) and the index of the worst element.
func relErr(got []float32, want []float64) (float64, int) {
	var diff, scale float64
	worst := 0
	for i := range want {
		d := math.Abs(float64(got[i]) - want[i])
		if d > diff || math.IsNaN(d) {
			diff, worst = d, i
		}
		scale = max(scale, math.Abs(want[i]))
	}
	if scale == 0 {
		return diff, worst
	}
	return diff / scale, worst
}

// mustPanic runs f and fails t unless it panics with an error wrapping want.
func mustPanic(t *testing.T, want error, f func()) {
	t.Helper()
	var err error
	func() {
		defer api.Recover(&err)
		f()
	}()
	if !errors.Is(err, want) {
		t.Errorf("got error %v, want one wrapping %v", err, want)
	}
}

// sameValues fails t unless two F32 tensors hold the same bits.
func sameValues(t *testing.T, what string, got, want api.Tensor) {
	t.Helper()
	g, w := api.Float32s(got), api.Float32s(want)
	if len(g) != len(w) {
		t.Fatalf("%s: %d values, want %d", what, len(g), len(w))
	}
	for i := range g {
		if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			t.Fatalf("%s: value %d is %v, want %v", what, i, g[i], w[i])
		}
	}
}

// closeValues fails t unless max|got-want| <= tol.
func closeValues(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			t.Fatalf("%s: value %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// label formats a subtest name.
func label(format string, args ...any) string { return fmt.Sprintf(format, args...) }
