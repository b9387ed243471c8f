package nn

import (
	"testing"

	"github.com/densessm/densessm/api"
)

// TestVarUsedTwice checks that contributions to a Var add up: within one op
// (x*x), across ops (x*x + x), and through a multi-gradient kernel.
func TestVarUsedTwice(t *testing.T) {
	b := newBackend()
	xs := []float32{-1.5, 0.5, 2}
	x := NewVar(api.FromFloat32s(b, xs, 3), true)
	tp := NewTape(b)
	tp.Backward(tp.Sum(tp.Add(tp.Mul(x, x), x))) // d/dx = 2x + 1
	want := make([]float64, len(xs))
	for i, v := range xs {
		want[i] = 2*float64(v) + 1
	}
	closeValues(t, "d(x*x+x)/dx", api.Float32s(x.Grad()), want, 1e-6)

	// A weight used by two Linear ops and by a MatMul, against finite
	// differences.
	r := newRand(30)
	w := leaf(b, r, -1, 1, 4, 4)
	in := leaf(b, r, -1, 1, 3, 4)
	checkGrads(t, b, []named{{"w", w}, {"in", in}}, opTol, func(tp *Tape) *Var {
		h := tp.Linear(tp.Linear(in, w, nil), w, nil)
		return tp.Sum(tp.MatMul(h, w, false, false))
	})
}

// TestLeafAccumulation checks that leaf gradients add up over Backward calls
// until ZeroGrad, and that ZeroGrad keeps the gradient tensor.
func TestLeafAccumulation(t *testing.T) {
	b := newBackend()
	r := newRand(31)
	x := leaf(b, r, -1, 1, 2, 3)
	w := leaf(b, r, -1, 1, 4, 3)
	run := func() {
		tp := NewTape(b)
		tp.Backward(tp.Sum(tp.Unary(api.OpSquare, tp.Linear(x, w, nil))))
	}
	run()
	once := api.Float32s(w.Grad())
	grad := w.Grad()
	run()
	twice := api.Float32s(w.Grad())
	for i := range once {
		if d := twice[i] - 2*once[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("after two Backward calls grad[%d] = %v, want 2 * %v", i, twice[i], once[i])
		}
	}
	w.ZeroGrad()
	closeValues(t, "zeroed gradient", api.Float32s(w.Grad()), make([]float64, len(once)), 0)
	run()
	if w.Grad() != grad {
		t.Error("ZeroGrad or Backward replaced the gradient tensor")
	}
	sameValues(t, "gradient after ZeroGrad", w.Grad(), api.FromFloat32s(b, once, 4, 3))
}

// TestInferenceTape checks that an inference tape records nothing, yields
// Vars needing no gradient and the same values as a recording tape, and
// refuses Backward.
func TestInferenceTape(t *testing.T) {
	b := newBackend()
	r := newRand(32)
	x := leaf(b, r, -1, 1, 2, 3, 4)
	w := leaf(b, r, -1, 1, 5, 4)
	g := leaf(b, r, 0.5, 1.5, 5)
	forward := func(tp *Tape) *Var {
		return tp.Sum(tp.RMSNorm(tp.Unary(api.OpSilu, tp.Linear(x, w, nil)), g, 1e-5))
	}
	inf := NewInferenceTape(b)
	got := forward(inf)
	if got.RequiresGrad() || inf.Recording() || len(inf.nodes) != 0 {
		t.Errorf("inference tape: requiresGrad %v, recording %v, %d nodes", got.RequiresGrad(), inf.Recording(), len(inf.nodes))
	}
	rec := NewTape(b)
	want := forward(rec)
	if !want.RequiresGrad() || len(rec.nodes) != 4 {
		t.Errorf("recording tape: requiresGrad %v, %d nodes, want true and 4", want.RequiresGrad(), len(rec.nodes))
	}
	sameValues(t, "inference value", got.Value(), want.Value())
	mustPanic(t, api.ErrInternal, func() { inf.Backward(got) })
	if w.Grad() != nil {
		t.Error("inference tape produced a gradient")
	}
}

// TestNoGradInputs checks that constants and frozen leaves get no gradient
// and that ops on them alone are not recorded.
func TestNoGradInputs(t *testing.T) {
	b := newBackend()
	r := newRand(33)
	c := constant(b, r, 3, 4)
	frozen := leaf(b, r, -1, 1, 4, 4)
	frozen.SetRequiresGrad(false)
	x := leaf(b, r, -1, 1, 3, 4)
	tp := NewTape(b)
	h := tp.Linear(c, frozen, nil)
	if h.RequiresGrad() || len(tp.nodes) != 0 {
		t.Fatalf("op on constants: requiresGrad %v, %d nodes", h.RequiresGrad(), len(tp.nodes))
	}
	tp.Backward(tp.Sum(tp.Mul(h, x)))
	if c.Grad() != nil || frozen.Grad() != nil {
		t.Error("a Var that needs no gradient received one")
	}
	sameValues(t, "d(sum(h*x))/dx", x.Grad(), h.Value())
	mustPanic(t, api.ErrInternal, func() { tp.Add(h, x).SetRequiresGrad(false) })
}

// TestBackwardMisuse checks the errors of Backward and of reusing a graph.
func TestBackwardMisuse(t *testing.T) {
	b := newBackend()
	r := newRand(34)
	x := leaf(b, r, -1, 1, 2, 3)
	tp := NewTape(b)
	y := tp.Scale(x, 2)
	mustPanic(t, api.ErrShape, func() { tp.Backward(y) }) // not a scalar
	loss := tp.Sum(y)
	other := NewTape(b)
	mustPanic(t, api.ErrInternal, func() { other.Backward(loss) })                 // another tape's graph
	mustPanic(t, api.ErrInternal, func() { other.Add(y, x) })                      // another tape's Var
	mustPanic(t, api.ErrInternal, func() { tp.Backward(NewVar(y.Value(), true)) }) // a leaf
	tp.Backward(loss)
	if y.Grad() != nil || loss.Grad() != nil {
		t.Error("intermediate gradients were kept after Backward")
	}
	if x.Grad() == nil {
		t.Fatal("leaf has no gradient")
	}
	mustPanic(t, api.ErrInternal, func() { tp.Backward(loss) }) // the graph is gone
	mustPanic(t, api.ErrInternal, func() { tp.Scale(y, 1) })    // y is from before Backward
	c := NewTape(b)
	mustPanic(t, api.ErrInternal, func() { c.Backward(c.Sum(constant(b, r, 2))) }) // nothing to differentiate
	// A graph can be recorded again on the same tape after Reset.
	tp.Scale(x, 3)
	tp.Reset()
	if len(tp.nodes) != 0 {
		t.Errorf("%d nodes after Reset", len(tp.nodes))
	}
	tp.Backward(tp.Sum(tp.Scale(x, 3)))
}
