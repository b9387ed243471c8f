package nn

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// Reshape returns x with a new shape of the same element count. The value is
// a view sharing x's storage; the gradient is copied back into x's shape.
func (t *Tape) Reshape(x *Var, shape ...int) *Var {
	if api.Shape(shape).NumElements() != x.Shape().NumElements() {
		api.Panicf(api.ErrShape, "nn.Reshape: %v to %v", x.Shape(), shape)
	}
	y := t.b.Reshape(x.value, shape...)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		t.b.Copy(s.dst(), dy)
		s.flush()
	})
}

// Permute returns x with its axes reordered: axis i of the result is axis
// perm[i] of x (a copy).
func (t *Tape) Permute(x *Var, perm ...int) *Var {
	xs := x.Shape()
	if len(perm) != len(xs) {
		api.Panicf(api.ErrShape, "nn.Permute: %d axes for shape %v", len(perm), xs)
	}
	inv := make([]int, len(perm)) // inverse permutation
	seen := make([]bool, len(perm))
	shape := make([]int, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			api.Panicf(api.ErrShape, "nn.Permute: %v is not a permutation of the axes of %v", perm, xs)
		}
		seen[p] = true
		inv[p] = i
		shape[i] = xs[p]
	}
	y := t.alloc(shape...)
	t.b.Permute(y, x.value, perm...)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		if s == nil {
			return
		}
		t.b.Permute(s.dst(), dy, inv...)
		s.flush()
	})
}

// axisIndex resolves a possibly negative axis (-1 is the last) for a tensor
// of the given rank, panicking when it is out of range.
func axisIndex(op string, rank, axis int) int {
	a := axis
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		api.Panicf(api.ErrShape, "nn.%s: axis %d for rank %d", op, axis, rank)
	}
	return a
}

// Slice returns the window x[..., start:start+n, ...] along axis (a copy);
// a negative axis counts from the end.
func (t *Tape) Slice(x *Var, axis, start, n int) *Var {
	xs := x.Shape()
	ax := axisIndex("Slice", len(xs), axis)
	if start < 0 || n < 0 || start+n > xs[ax] {
		api.Panicf(api.ErrShape, "nn.Slice: [%d:%d] of axis %d of %v", start, start+n, ax, xs)
	}
	shape := xs.Clone()
	shape[ax] = n
	y := t.alloc(shape...)
	t.b.Slice(y, x.value, ax, start)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		if s == nil {
			return
		}
		t.b.Fill(s.dst(), 0)
		t.b.SetSlice(s.dst(), dy, ax, start)
		s.flush()
	})
}

// Concat joins xs along axis (a negative axis counts from the end); the
// other axes must match.
func (t *Tape) Concat(axis int, xs ...*Var) *Var {
	if len(xs) == 0 {
		api.Panicf(api.ErrShape, "nn.Concat of nothing")
	}
	xs = slices.Clone(xs) // the closure below must not see the caller's later edits
	first := xs[0].Shape()
	ax := axisIndex("Concat", len(first), axis)
	shape := first.Clone()
	shape[ax] = 0
	starts := make([]int, len(xs))
	for i, x := range xs {
		s := x.Shape()
		if len(s) != len(first) || !slices.Equal(s[:ax], first[:ax]) || !slices.Equal(s[ax+1:], first[ax+1:]) {
			api.Panicf(api.ErrShape, "nn.Concat: %v and %v along axis %d", first, s, ax)
		}
		starts[i] = shape[ax]
		shape[ax] += s[ax]
	}
	y := t.alloc(shape...)
	for i, x := range xs {
		t.b.SetSlice(y, x.value, ax, starts[i])
	}
	return t.op(y, xs, func(dy api.Tensor) {
		for i, x := range xs {
			s := t.sink(x)
			if s == nil {
				continue
			}
			t.b.Slice(s.dst(), dy, ax, starts[i])
			s.flush()
		}
	})
}
