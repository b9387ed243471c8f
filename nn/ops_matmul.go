package nn

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// MatMul returns op(a) op(b), where op(a) is a [..., M, K] (a [..., K, M]
// read transposed when transA) and op(b) is b [..., K, N] (b [..., N, K]
// when transB); the result is [..., M, N]. The leading (batch) axes of a and
// b are equal, or one of them has rank 2 and is used for every batch.
func (t *Tape) MatMul(a, b *Var, transA, transB bool) *Var {
	as, bs := a.Shape(), b.Shape()
	if len(as) < 2 || len(bs) < 2 {
		api.Panicf(api.ErrShape, "nn.MatMul: operands %v and %v need rank >= 2", as, bs)
	}
	m, ka := as[len(as)-2], as[len(as)-1]
	if transA {
		m, ka = ka, m
	}
	kb, n := bs[len(bs)-2], bs[len(bs)-1]
	if transB {
		kb, n = n, kb
	}
	var batch []int
	switch {
	case len(as) == 2:
		batch = bs[:len(bs)-2]
	case len(bs) == 2:
		batch = as[:len(as)-2]
	case slices.Equal(as[:len(as)-2], bs[:len(bs)-2]):
		batch = as[:len(as)-2]
	default:
		api.Panicf(api.ErrShape, "nn.MatMul: batch axes of %v and %v differ", as, bs)
	}
	if ka != kb {
		api.Panicf(api.ErrShape, "nn.MatMul: inner sizes differ: %v (transposed %v) by %v (transposed %v)", as, transA, bs, transB)
	}
	outShape := append(slices.Clone(batch), m, n)
	y := t.alloc(outShape...)
	t.b.MatMul(y, a.value, b.value, transA, transB, 1, 0)
	return t.op(y, []*Var{a, b}, func(dy api.Tensor) {
		// With C = op(A) op(B): dop(A) = dC op(B)^T and dop(B) = op(A)^T dC;
		// a transposed operand takes the transpose of its gradient.
		switch {
		case !transA && !transB:
			t.matmulGrad(a, batch, dy, b.value, false, true)
			t.matmulGrad(b, batch, a.value, dy, true, false)
		case transA && !transB:
			t.matmulGrad(a, batch, b.value, dy, false, true)
			t.matmulGrad(b, batch, a.value, dy, false, false)
		case !transA && transB:
			t.matmulGrad(a, batch, dy, b.value, false, false)
			t.matmulGrad(b, batch, dy, a.value, true, false)
		default:
			t.matmulGrad(a, batch, b.value, dy, true, true)
			t.matmulGrad(b, batch, dy, a.value, true, true)
		}
	})
}

// matmulGrad adds op(x) op(y) into v's gradient. When v has rank 2 but the
// product has batch axes (v was used for every batch), the per-batch
// products are computed into a temporary and summed over the batch.
func (t *Tape) matmulGrad(v *Var, batch []int, x, y api.Tensor, transX, transY bool) {
	if !v.requiresGrad {
		return
	}
	vs := v.Shape()
	if len(batch) == 0 || len(vs) > 2 {
		t.gradMatMul(v, nil, x, y, transX, transY)
		return
	}
	tmp := t.alloc(append(slices.Clone(batch), vs...)...)
	t.b.MatMul(tmp, x, y, transX, transY, 1, 0)
	s := t.sink(v)
	t.b.SumTo(s.dst(), tmp)
	s.flush()
	t.b.Free(tmp)
}

// Linear returns x w^T + bias: x [..., in], w [out, in] (PyTorch layout),
// bias [out] or nil; the result is [..., out]. The leading axes of x are
// flattened into rows of one matrix product.
func (t *Tape) Linear(x, w, bias *Var) *Var {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) < 1 || len(ws) != 2 || xs[len(xs)-1] != ws[1] {
		api.Panicf(api.ErrShape, "nn.Linear: input %v, weight %v (want [..., in] and [out, in])", xs, ws)
	}
	in, out := ws[1], ws[0]
	if bias != nil && !bias.Shape().Equal(api.Shape{out}) {
		api.Panicf(api.ErrShape, "nn.Linear: bias %v, want [%d]", bias.Shape(), out)
	}
	rows := xs[:len(xs)-1].NumElements()
	outShape := append(slices.Clone(xs[:len(xs)-1]), out)
	x2 := t.b.Reshape(x.value, rows, in) // [rows, in]
	y := t.alloc(outShape...)
	y2 := t.b.Reshape(y, rows, out) // [rows, out]
	var beta float32
	if bias != nil {
		t.b.Binary(api.OpAdd, y2, y2, bias.value) // y2 is zero: every row = bias
		beta = 1
	}
	t.b.MatMul(y2, x2, w.value, false, true, 1, beta)
	return t.op(y, []*Var{x, w, bias}, func(dy api.Tensor) {
		dy2 := t.b.Reshape(dy, rows, out)
		t.gradMatMul(x, []int{rows, in}, dy2, w.value, false, false) // dx = dy w
		t.gradMatMul(w, nil, dy2, x2, true, false)                   // dw = dy^T x
		if s := t.sink(bias); s != nil {
			t.b.SumTo(s.dst(), dy2) // dbias = column sums of dy
			s.flush()
		}
	})
}

// LinearInto computes x w^T into dst [..., out] on b, off any tape (no
// gradient): the last layer of an inference pass whose output the caller
// allocated (api.ForwardIntoModel). x is [..., in], w is [out, in].
func LinearInto(b api.Backend, dst, x, w api.Tensor) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) < 1 || len(ws) != 2 || xs[len(xs)-1] != ws[1] {
		api.Panicf(api.ErrShape, "nn.LinearInto: input %v, weight %v (want [..., in] and [out, in])", xs, ws)
	}
	rows, in, out := xs[:len(xs)-1].NumElements(), ws[1], ws[0]
	if !dst.Shape().Equal(append(slices.Clone(xs[:len(xs)-1]), out)) {
		api.Panicf(api.ErrShape, "nn.LinearInto: output %v for input %v and weight %v", dst.Shape(), xs, ws)
	}
	b.MatMul(b.Reshape(dst, rows, out), b.Reshape(x, rows, in), w, false, true, 1, 0)
}
