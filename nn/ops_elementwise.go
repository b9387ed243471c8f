package nn

import (
	"github.com/densessm/densessm/api"
)

// Add returns a + b with NumPy broadcasting (shapes aligned at the last
// axis; each pair of sizes equal or one of them 1).
func (t *Tape) Add(a, b *Var) *Var { return t.binary(api.OpAdd, a, b) }

// Sub returns a - b with broadcasting.
func (t *Tape) Sub(a, b *Var) *Var { return t.binary(api.OpSub, a, b) }

// Mul returns a * b element-wise with broadcasting.
func (t *Tape) Mul(a, b *Var) *Var { return t.binary(api.OpMul, a, b) }

// Div returns a / b element-wise with broadcasting.
func (t *Tape) Div(a, b *Var) *Var { return t.binary(api.OpDiv, a, b) }

// binary runs a broadcasting element-wise op. The gradient with respect to
// an operand that was broadcast is summed back to its shape with SumTo.
func (t *Tape) binary(op api.BinaryOp, a, b *Var) *Var {
	shape, err := api.BroadcastShapes(a.Shape(), b.Shape())
	if err != nil {
		api.Panicf(api.ErrShape, "nn.%s: %v", op, err)
	}
	y := t.alloc(shape...)
	t.b.Binary(op, y, a.value, b.value)
	return t.op(y, []*Var{a, b}, func(dy api.Tensor) {
		switch op {
		case api.OpAdd:
			t.reduceInto(a, dy, 1)
			t.reduceInto(b, dy, 1)
		case api.OpSub:
			t.reduceInto(a, dy, 1)
			t.reduceInto(b, dy, -1)
		case api.OpMul: // da = dy*b, db = dy*a
			t.productInto(a, api.OpMul, dy, b.value, 1)
			t.productInto(b, api.OpMul, dy, a.value, 1)
		case api.OpDiv: // da = dy/b, db = -dy*a/b^2 = -(dy*y)/b
			t.productInto(a, api.OpDiv, dy, b.value, 1)
			if b.requiresGrad {
				tmp := t.alloc(shape...)
				t.b.Binary(api.OpMul, tmp, dy, y)
				t.productInto(b, api.OpDiv, tmp, b.value, -1)
				t.b.Free(tmp)
			}
		}
	})
}

// reduceInto adds scale * g, summed down to v's shape, into v's gradient; g
// has the shape v was broadcast to.
func (t *Tape) reduceInto(v *Var, g api.Tensor, scale float32) {
	s := t.sink(v)
	if s == nil {
		return
	}
	if v.Shape().Equal(g.Shape()) {
		if scale == 1 {
			t.b.Copy(s.dst(), g)
		} else {
			t.b.Affine(s.dst(), g, scale, 0)
		}
	} else {
		t.b.SumTo(s.dst(), g)
		if scale != 1 {
			t.b.Affine(s.dst(), s.dst(), scale, 0)
		}
	}
	s.flush()
}

// productInto adds scale * (g op c), summed down to v's shape, into v's
// gradient; g has the broadcast shape of the op's output.
func (t *Tape) productInto(v *Var, op api.BinaryOp, g, c api.Tensor, scale float32) {
	s := t.sink(v)
	if s == nil {
		return
	}
	if v.Shape().Equal(g.Shape()) {
		t.b.Binary(op, s.dst(), g, c)
	} else {
		tmp := t.alloc(g.Shape()...)
		t.b.Binary(op, tmp, g, c)
		t.b.SumTo(s.dst(), tmp)
		t.b.Free(tmp)
	}
	if scale != 1 {
		t.b.Affine(s.dst(), s.dst(), scale, 0)
	}
	s.flush()
}

// Unary returns op(x) element-wise (api.OpExp, api.OpSilu, ...).
func (t *Tape) Unary(op api.UnaryOp, x *Var) *Var {
	y := t.alloc(x.Shape()...)
	t.b.Unary(op, y, x.value)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		t.b.UnaryGrad(op, s.dst(), x.value, dy)
		s.flush()
	})
}

// Affine returns x*scale + shift element-wise.
func (t *Tape) Affine(x *Var, scale, shift float32) *Var {
	y := t.alloc(x.Shape()...)
	t.b.Affine(y, x.value, scale, shift)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		t.b.Affine(s.dst(), dy, scale, 0)
		s.flush()
	})
}

// Scale returns x*scale element-wise.
func (t *Tape) Scale(x *Var, scale float32) *Var { return t.Affine(x, scale, 0) }

// SumTo returns x summed over the axes that broadcasting shape to x's shape
// would expand: shape must broadcast to x's shape (sizes 1 where x is
// summed; missing leading axes are summed away). An empty shape sums
// everything into a scalar.
func (t *Tape) SumTo(x *Var, shape ...int) *Var {
	if b, err := api.BroadcastShapes(shape, x.Shape()); err != nil || !b.Equal(x.Shape()) {
		api.Panicf(api.ErrShape, "nn.SumTo: %v does not broadcast to %v", shape, x.Shape())
	}
	y := t.alloc(shape...)
	t.b.SumTo(y, x.value)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		if s == nil {
			return
		}
		// Broadcast dy back over x's shape: 0 + dy.
		t.b.Fill(s.dst(), 0)
		t.b.Binary(api.OpAdd, s.dst(), s.dst(), dy)
		s.flush()
	})
}

// Sum returns the sum of all elements of x as a scalar (shape []).
func (t *Tape) Sum(x *Var) *Var { return t.SumTo(x) }

// Mean returns the mean of all elements of x as a scalar (shape []).
func (t *Tape) Mean(x *Var) *Var {
	n := x.Shape().NumElements()
	if n == 0 {
		api.Panicf(api.ErrShape, "nn.Mean of an empty tensor %v", x.Shape())
	}
	return t.Scale(t.Sum(x), 1/float32(n))
}
