package nn

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/backendtest"
)

// refKernels implements the fused-kernel interfaces with nn's references,
// on a backend that has none, so that the backend compliance suite checks
// the references as it checks a backend's fused kernels: against its
// float64 references, its finite differences and its misuse cases. The
// gradient kernels differentiate the reference on a tape.
type refKernels struct{ api.Backend }

// TestReferenceCompliance runs backendtest on the references.
func TestReferenceCompliance(t *testing.T) {
	_, ref := fusedAndReference()
	backendtest.Run(t, refKernels{ref})
}

func (r refKernels) CausalConv1d(dst, x, w, bias, prev api.Tensor) {
	CausalConv1dInto(r.Backend, dst, x, w, bias, prev)
}

// gradLeaf returns a leaf holding x that requires a gradient when the
// gradient output g is not nil (nil for a nil x).
func gradLeaf(x, g api.Tensor) *Var {
	if x == nil {
		return nil
	}
	return NewVar(x, g != nil)
}

// gradOut copies v's gradient into g (zeros when none arrived).
func gradOut(b api.Backend, g api.Tensor, v *Var) {
	if g == nil {
		return
	}
	if v.Grad() == nil {
		b.Fill(g, 0)
		return
	}
	copyInto(b, "gradient", "gradient output", g, v.Grad())
}

// weighted adds sum(y * dy) to loss (nil for zero) when dy is not nil.
func weighted(tp *Tape, loss, y *Var, dy api.Tensor) *Var {
	if dy == nil {
		return loss
	}
	term := tp.Sum(tp.Mul(y, NewVar(dy, false)))
	if loss == nil {
		return term
	}
	return tp.Add(loss, term)
}

// backward runs Backward of loss, unless nothing needs a gradient.
func backward(tp *Tape, loss *Var) {
	if loss != nil && loss.RequiresGrad() {
		tp.Backward(loss)
	}
}

func (r refKernels) CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy api.Tensor) {
	b := r.Backend
	xs, ws := x.Shape(), w.Shape()
	var bias, pv *Var
	if dbias != nil && len(ws) == 2 {
		bias = NewVar(b.Alloc(api.F32, ws[0]), true)
	}
	if prev != nil {
		pv = gradLeaf(prev, dprev)
	} else if dprev != nil && len(xs) == 3 && len(ws) == 2 { // the gradient at the zero context
		pv = NewVar(b.Alloc(api.F32, xs[0], ws[1]-1, xs[2]), true)
	}
	xv, wv := gradLeaf(x, dx), gradLeaf(w, dw)
	tp := NewTape(b)
	y := tp.CausalConv1d(xv, wv, bias, pv)
	if !dy.Shape().Equal(y.Shape()) {
		api.Panicf(api.ErrShape, "CausalConv1dGrad: dy %v for y %v", dy.Shape(), y.Shape())
	}
	backward(tp, weighted(tp, nil, y, dy))
	gradOut(b, dx, xv)
	gradOut(b, dw, wv)
	gradOut(b, dbias, bias)
	gradOut(b, dprev, pv)
}

func (r refKernels) SelectiveScan(y, hT, hs api.Tensor, in api.ScanArgs) {
	SelectiveScanInto(r.Backend, y, hT, hs, in)
}

func (r refKernels) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT, dhs api.Tensor) {
	b := r.Backend
	if (g.D != nil && in.D == nil) || (g.H0 != nil && in.H0 == nil) || (g.Inject != nil && in.Inject == nil) {
		api.Panicf(api.ErrShape, "SelectiveScanGrad: a gradient asked for an absent input")
	}
	v := ScanVars{X: gradLeaf(in.X, g.X), Delta: gradLeaf(in.Delta, g.Delta), A: gradLeaf(in.A, g.A),
		Bm: gradLeaf(in.Bm, g.Bm), Cm: gradLeaf(in.Cm, g.Cm), D: gradLeaf(in.D, g.D), H0: gradLeaf(in.H0, g.H0),
		Inject: gradLeaf(in.Inject, g.Inject)}
	tp := NewTape(b)
	y, hT, hs := tp.SelectiveScan(v, dhT != nil, dhs != nil)
	for _, c := range []struct {
		out  *Var
		grad api.Tensor
	}{{y, dy}, {hT, dhT}, {hs, dhs}} {
		if c.grad != nil && !c.grad.Shape().Equal(c.out.Shape()) {
			api.Panicf(api.ErrShape, "SelectiveScanGrad: gradient %v for an output %v", c.grad.Shape(), c.out.Shape())
		}
	}
	backward(tp, weighted(tp, weighted(tp, weighted(tp, nil, y, dy), hT, dhT), hs, dhs))
	gradOut(b, g.X, v.X)
	gradOut(b, g.Delta, v.Delta)
	gradOut(b, g.A, v.A)
	gradOut(b, g.Bm, v.Bm)
	gradOut(b, g.Cm, v.Cm)
	gradOut(b, g.D, v.D)
	gradOut(b, g.H0, v.H0)
	gradOut(b, g.Inject, v.Inject)
}

func (r refKernels) Rotary(dst, x api.Tensor, theta []float32, offset int, inverse bool) {
	RotaryInto(r.Backend, dst, x, theta, offset, inverse)
}

func (r refKernels) Retention(form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	RetentionInto(r.Backend, form, o, sT, in)
}

func (r refKernels) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	b := r.Backend
	if g.S0 != nil && in.S0 == nil {
		api.Panicf(api.ErrShape, "RetentionGrad: gradient of S0 asked for without S0")
	}
	v := RetentionVars{Q: gradLeaf(in.Q, g.Q), K: gradLeaf(in.K, g.K), V: gradLeaf(in.V, g.V), S0: gradLeaf(in.S0, g.S0),
		Gamma: in.Gamma, Offset: in.Offset, Chunk: in.Chunk}
	tp := NewTape(b)
	o, sT := tp.Retention(form, v, dsT != nil)
	if !do.Shape().Equal(o.Shape()) || (dsT != nil && !dsT.Shape().Equal(sT.Shape())) {
		api.Panicf(api.ErrShape, "RetentionGrad: do %v for o %v", do.Shape(), o.Shape())
	}
	backward(tp, weighted(tp, weighted(tp, nil, o, do), sT, dsT))
	gradOut(b, g.Q, v.Q)
	gradOut(b, g.K, v.K)
	gradOut(b, g.V, v.V)
	gradOut(b, g.S0, v.S0)
}
