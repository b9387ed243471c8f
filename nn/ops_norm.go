package nn

import (
	"encoding/binary"
	"slices"

	"github.com/densessm/densessm/api"
)

// RMSNorm returns x * rsqrt(mean(x^2) + eps) * w over the last axis: x
// [..., D], w [D] or nil for no weight.
func (t *Tape) RMSNorm(x, w *Var, eps float32) *Var {
	xs := x.Shape()
	if len(xs) == 0 || (w != nil && !w.Shape().Equal(api.Shape{xs[len(xs)-1]})) {
		api.Panicf(api.ErrShape, "nn.RMSNorm: input %v, weight %v (want [..., D] and [D])", xs, shapeOf(w))
	}
	wv := value(w)
	y := t.alloc(xs...)
	t.b.RMSNorm(y, x.value, wv, eps)
	return t.op(y, []*Var{x, w}, func(dy api.Tensor) {
		sx, sw := t.sink(x), t.sink(w)
		t.b.RMSNormGrad(sx.dst(), sw.dst(), x.value, wv, dy, eps)
		sx.flush()
		sw.flush()
	})
}

// Softmax returns softmax(x) over the last axis.
func (t *Tape) Softmax(x *Var) *Var {
	y := t.alloc(x.Shape()...)
	t.b.Softmax(y, x.value)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		t.b.SoftmaxGrad(s.dst(), y, dy)
		s.flush()
	})
}

// LogSoftmax returns log(softmax(x)) over the last axis.
func (t *Tape) LogSoftmax(x *Var) *Var {
	y := t.alloc(x.Shape()...)
	t.b.LogSoftmax(y, x.value)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		t.b.LogSoftmaxGrad(s.dst(), y, dy)
		s.flush()
	})
}

// CrossEntropy returns the mean over the targets that are not
// api.IgnoreIndex of logsumexp(logits[i]) - logits[i, targets[i]], as a
// scalar (shape []): logits [..., V], I32 targets [...] with one target per
// row of logits. When every target is ignored the loss and its gradient are
// 0 (PyTorch gives NaN). A target outside [0,V) panics with
// api.ErrOutOfRange.
func (t *Tape) CrossEntropy(logits *Var, targets api.Tensor) *Var {
	ls := logits.Shape()
	if len(ls) == 0 || targets.DType() != api.I32 || targets.Shape().NumElements() != ls[:len(ls)-1].NumElements() {
		api.Panicf(api.ErrShape, "nn.CrossEntropy: logits %v and %s targets %v (want [..., V] and I32 [...])", ls, targets.DType(), targets.Shape())
	}
	v := ls[len(ls)-1]
	n := ls[:len(ls)-1].NumElements()
	count := 0
	for _, id := range int32s(targets) {
		if id != api.IgnoreIndex {
			count++
		}
	}
	scale := 1 / float32(max(count, 1))

	logits2 := t.b.Reshape(logits.value, n, v) // [N,V]
	targets1 := t.b.Reshape(targets, n)        // [N]
	rows := t.alloc(n)                         // [N] per-row losses
	var dlogits api.Tensor                     // [N,V] gradient of the mean, saved for backward
	need := t.needGrad(logits)
	if need {
		dlogits = t.alloc(n, v)
	}
	t.b.CrossEntropy(rows, dlogits, logits2, targets1, api.IgnoreIndex)
	loss := t.alloc()
	t.b.SumTo(loss, rows)
	t.b.Affine(loss, loss, scale, 0)
	t.b.Free(rows)
	if need {
		t.b.Affine(dlogits, dlogits, scale, 0)
	}
	return t.op(loss, []*Var{logits}, func(dy api.Tensor) {
		s := t.sink(logits)
		t.b.Binary(api.OpMul, s.dst(n, v), dlogits, dy) // dy is a scalar
		s.flush()
		t.b.Free(dlogits)
	})
}

// int32s reads an I32 tensor into a host slice.
func int32s(x api.Tensor) []int32 {
	if h, ok := x.(api.HostInt32s); ok {
		return h.HostInt32s()
	}
	raw := make([]byte, 4*x.Shape().NumElements())
	x.Backend().Download(raw, x)
	out := make([]int32, len(raw)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// Embedding returns the rows of table [V,D] that the I32 ids [S...] name:
// the result is [S..., D]. An id outside [0,V) panics with api.ErrOutOfRange.
// The gradient scatter-adds the rows of dy into the table's gradient.
func (t *Tape) Embedding(table *Var, ids api.Tensor) *Var {
	ts := table.Shape()
	if len(ts) != 2 || ids.DType() != api.I32 {
		api.Panicf(api.ErrShape, "nn.Embedding: table %v and %s ids %v (want [V,D] and I32)", ts, ids.DType(), ids.Shape())
	}
	y := t.alloc(append(slices.Clone(ids.Shape()), ts[1])...)
	t.b.Gather(y, table.value, ids)
	return t.op(y, []*Var{table}, func(dy api.Tensor) {
		s := t.sink(table)
		t.b.GatherGrad(s.dst(), ids, dy)
		s.flush()
	})
}
