package nn

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestRotaryTheta(t *testing.T) {
	// torchscale: 1 / 10000^linspace(0, 1, d/2).
	got := RotaryTheta(8)
	want := []float64{1, math.Pow(10000, -1.0/3), math.Pow(10000, -2.0/3), 1e-4}
	closeValues(t, "theta(8)", got, want, 1e-7)
	closeValues(t, "theta(2)", RotaryTheta(2), []float64{1}, 0)
	mustPanic(t, api.ErrShape, func() { RotaryTheta(5) })
	if r := NewRotary(8); len(r.Theta) != 4 {
		t.Errorf("NewRotary(8) has %d angles", len(r.Theta))
	}
}

// TestCausalConv1dLayer checks that the layer views its [C,1,K] weight as
// [C,K] for the kernel: its output is the op's output on the same numbers.
func TestCausalConv1dLayer(t *testing.T) {
	b := newBackend()
	p := NewParams(b, 5)
	conv := NewCausalConv1d(p.Scope().Sub("conv1d"), 3, 4, Normal(1), Normal(1))
	noBias := NewCausalConv1d(p.Scope().Sub("conv2"), 3, 4, Normal(1), nil)
	if noBias.Bias != nil || p.Len() != 3 {
		t.Errorf("conv without bias: bias %v, %d parameters", noBias.Bias, p.Len())
	}
	r := newRand(6)
	x := constant(b, r, 2, 5, 3)
	prev := constant(b, r, 2, 3, 3)
	tp := NewInferenceTape(b)
	w := NewVar(b.Reshape(conv.Weight.Value(), 3, 4), false)
	sameValues(t, "layer output", conv.Forward(tp, x, prev).Value(), tp.CausalConv1d(x, w, conv.Bias, prev).Value())
}

// TestLinearLayer checks the layer against a hand computation.
func TestLinearLayer(t *testing.T) {
	b := newBackend()
	p := NewParams(b, 5)
	lin := NewLinear(p.Scope().Sub("fc"), 2, 3, Zeros(), Zeros())
	setFloat32s(lin.Weight.Value(), []float32{1, 2, 3, 4, 5, 6}) // [3,2]
	setFloat32s(lin.Bias.Value(), []float32{0.5, -1, 2})
	x := NewVar(api.FromFloat32s(b, []float32{1, -1, 2, 0.5}, 2, 1, 2), false)
	y := lin.Forward(NewInferenceTape(b), x)
	if !y.Shape().Equal(api.Shape{2, 1, 3}) {
		t.Fatalf("shape %v", y.Shape())
	}
	closeValues(t, "linear", api.Float32s(y.Value()), []float64{-0.5, -2, 1, 3.5, 7, 15}, 0)
}
