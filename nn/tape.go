package nn

import (
	"github.com/densessm/densessm/api"
)

// Var is a value in a differentiable computation: an F32 tensor, whether a
// gradient is wanted for it, and the gradient once Backward has reached it.
//
// A Var is either a leaf (made by NewVar or by Params; it belongs to no tape
// and keeps its gradient across Backward calls) or the output of an op on a
// Tape (it belongs to that tape until the tape's next Backward or Reset).
type Var struct {
	value        api.Tensor
	grad         api.Tensor // same shape as value; nil until a gradient arrives
	gradZero     bool       // grad holds zeros (after ZeroGrad): the next gradient may overwrite it
	requiresGrad bool
	tape         *Tape  // nil for leaves
	gen          uint64 // the tape generation that made this Var

	// Storage ownership, for Tape.Release (release.go). A Var whose value
	// its op allocated owns that storage. Any other op output (a view made
	// by Reshape, say) may share storage with its op's inputs: shares
	// lists those of them that belong to the same tape (their owners, for
	// inputs that are views themselves), so that keeping the view keeps
	// them.
	shares   []*Var
	released bool // the tape freed the value
	pinned   bool // scratch mark of Release
}

// NewVar returns a leaf Var holding value. A leaf with requiresGrad set
// accumulates the gradients of every Backward it takes part in until
// ZeroGrad.
func NewVar(value api.Tensor, requiresGrad bool) *Var {
	return &Var{value: value, requiresGrad: requiresGrad}
}

// Value returns the tensor the Var holds. The caller must not write into the
// value of a Var that a recording tape may still differentiate through. It
// panics (api.ErrInternal) when Tape.Release has freed the value.
func (v *Var) Value() api.Tensor {
	v.checkLive()
	return v.value
}

// Shape returns the shape of the value.
func (v *Var) Shape() api.Shape { return v.value.Shape() }

// Grad returns the accumulated gradient, with the value's shape, or nil when
// no gradient has reached the Var. Only leaves keep a gradient after
// Backward returns.
func (v *Var) Grad() api.Tensor { return v.grad }

// RequiresGrad reports whether Backward computes a gradient for the Var.
func (v *Var) RequiresGrad() bool { return v.requiresGrad }

// SetRequiresGrad turns gradient computation on or off for a leaf (to freeze
// a parameter, say). It panics for the output of an op.
func (v *Var) SetRequiresGrad(on bool) {
	if v.tape != nil {
		api.Panicf(api.ErrInternal, "nn: SetRequiresGrad on the output of an op")
	}
	v.requiresGrad = on
}

// ZeroGrad sets the gradient to zero, keeping its memory; the next gradient
// that arrives is written over it without an extra addition.
func (v *Var) ZeroGrad() {
	if v.grad != nil {
		v.grad.Backend().Fill(v.grad, 0)
		v.gradZero = true
	}
}

// node is one recorded op: its outputs and the closure that, given the
// gradients of the outputs (nil for an output no gradient reached), adds the
// gradients of its inputs.
type node struct {
	outs     []*Var
	backward func(dys []api.Tensor)
}

// Tape records differentiable ops on one backend. A recording tape (NewTape)
// keeps a backward closure for every op whose inputs need a gradient; an
// inference tape (NewInferenceTape) runs the same ops and keeps nothing.
type Tape struct {
	b      api.Backend
	record bool
	nodes  []node
	gen    uint64

	// Release's bookkeeping (release.go), kept from the first Mark on.
	tracking   bool
	inBackward bool         // Backward is running: allocations are its closures' temporaries
	fresh      []api.Tensor // tensors allocated since the last op's outputs were made
	owned      []*Var       // the op outputs whose values the tape allocated, oldest first
}

// NewTape returns a tape on b that records ops for Backward.
func NewTape(b api.Backend) *Tape { return &Tape{b: b, record: true} }

// NewInferenceTape returns a tape on b that records nothing: its ops build
// no closures and their outputs never require a gradient.
func NewInferenceTape(b api.Backend) *Tape { return &Tape{b: b} }

// Backend returns the backend the tape's ops run on.
func (t *Tape) Backend() api.Backend { return t.b }

// Recording reports whether the tape records ops for Backward.
func (t *Tape) Recording() bool { return t.record }

// Reset forgets every recorded op without running it, so that the tape can
// record a new graph. Vars made before Reset can no longer be
// differentiated through.
func (t *Tape) Reset() {
	clear(t.nodes)
	t.nodes = t.nodes[:0]
	t.gen++
}

// Backward adds d(loss)/dv into the gradient of every Var v that requires
// one and that loss depends on, then resets the tape. loss must hold one
// element ([] or [1]) and be the output of an op recorded on this tape since
// its last Backward or Reset.
//
// A Var that an op uses twice receives the sum of both contributions, and
// gradients of leaves add to what they held before.
func (t *Tape) Backward(loss *Var) {
	switch {
	case !t.record:
		api.Panicf(api.ErrInternal, "nn: Backward on an inference tape")
	case loss.tape != t || loss.gen != t.gen:
		api.Panicf(api.ErrInternal, "nn: Backward of a Var that this tape's current graph did not produce")
	case !loss.requiresGrad:
		api.Panicf(api.ErrInternal, "nn: Backward of a loss that depends on nothing that requires a gradient")
	case loss.Shape().NumElements() != 1:
		api.Panicf(api.ErrShape, "nn: Backward of a loss of shape %v, want one element", loss.Shape())
	}
	s := t.sink(loss)
	t.b.Fill(s.dst(), 1)
	s.flush()
	t.inBackward = true
	defer func() { t.inBackward = false }()
	for i := len(t.nodes) - 1; i >= 0; i-- {
		n := t.nodes[i]
		dys := make([]api.Tensor, len(n.outs))
		reached := false
		for j, o := range n.outs {
			dys[j] = o.grad
			reached = reached || o.grad != nil
		}
		if reached {
			n.backward(dys)
		}
		// Every contribution to the outputs came from later ops, which have
		// run: their gradients are no longer needed.
		for _, o := range n.outs {
			if o.grad != nil {
				t.b.Free(o.grad)
				o.grad = nil
			}
		}
	}
	t.Reset()
}

// op makes the output Var of an op with one output; see opN.
func (t *Tape) op(value api.Tensor, ins []*Var, backward func(dy api.Tensor)) *Var {
	return t.opN([]api.Tensor{value}, ins, func(dys []api.Tensor) { backward(dys[0]) })[0]
}

// opN makes the output Vars of an op from their values. When the tape
// records and some input requires a gradient, the outputs require one too
// and backward is kept for Backward; it receives the outputs' gradients, nil
// for an output that no gradient reached. Entries of ins may be nil
// (optional inputs).
func (t *Tape) opN(values []api.Tensor, ins []*Var, backward func(dys []api.Tensor)) []*Var {
	need := t.needGrad(ins...)
	outs := make([]*Var, len(values))
	for i, v := range values {
		outs[i] = &Var{value: v, requiresGrad: need, tape: t, gen: t.gen}
	}
	if t.tracking {
		t.own(outs, ins)
	}
	if need {
		t.nodes = append(t.nodes, node{outs: outs, backward: backward})
	}
	return outs
}

// needGrad reports whether an op on ins must be recorded: the tape records
// and some input requires a gradient. It panics when such an input is an op
// output from another tape or from before this tape's last Backward, since
// its gradient could never reach the leaves behind it.
func (t *Tape) needGrad(ins ...*Var) bool {
	if !t.record {
		return false
	}
	need := false
	for _, v := range ins {
		if v == nil || !v.requiresGrad {
			continue
		}
		if v.tape != nil && (v.tape != t || v.gen != t.gen) {
			api.Panicf(api.ErrInternal, "nn: op input was made by another tape or before the last Backward or Reset")
		}
		need = true
	}
	return need
}

// alloc returns a new zero-filled F32 tensor on the tape's backend. While
// the tape tracks storage (Mark), the next op that returns it as an output
// owns it.
func (t *Tape) alloc(shape ...int) api.Tensor {
	y := t.b.Alloc(api.F32, shape...)
	if t.tracking && !t.inBackward {
		t.fresh = append(t.fresh, y)
	}
	return y
}

// gradSink is where one gradient contribution to a Var is written. Gradient
// kernels overwrite their outputs, so when the Var already holds a gradient
// the contribution goes to a temporary that flush adds in. A nil *gradSink
// stands for a Var that needs no gradient: dst returns nil (which gradient
// kernels skip) and flush does nothing.
type gradSink struct {
	b   api.Backend
	v   *Var
	out api.Tensor
	add bool // out is a temporary to add into v.grad
}

// sink returns the sink for the next gradient contribution to v, or nil when
// v is nil or needs no gradient. Sinks for the same Var may be open at once
// (an op that uses a Var twice): only the first can write in place.
func (t *Tape) sink(v *Var) *gradSink {
	if v == nil || !v.requiresGrad {
		return nil
	}
	s := &gradSink{b: t.b, v: v}
	switch {
	case v.grad == nil:
		v.grad = t.b.Alloc(api.F32, v.Shape()...)
		s.out = v.grad
	case v.gradZero:
		s.out = v.grad
	default:
		s.out = t.b.Alloc(api.F32, v.Shape()...)
		s.add = true
	}
	v.gradZero = false
	return s
}

// dst returns the tensor to write the contribution into, shaped like the
// Var, or reshaped to shape when given (same element count).
func (s *gradSink) dst(shape ...int) api.Tensor {
	if s == nil {
		return nil
	}
	if len(shape) > 0 {
		return s.b.Reshape(s.out, shape...)
	}
	return s.out
}

// flush adds the contribution into the Var's gradient when it was written to
// a temporary.
func (s *gradSink) flush() {
	if s == nil || !s.add {
		return
	}
	s.b.Binary(api.OpAdd, s.v.grad, s.v.grad, s.out)
	s.b.Free(s.out)
}

// gradMatMul adds op(a) op(b) into v's gradient (shaped like v, or as shape
// when given), using MatMul's beta to accumulate in place instead of a
// temporary. It does nothing when v needs no gradient.
func (t *Tape) gradMatMul(v *Var, shape []int, a, b api.Tensor, transA, transB bool) {
	if v == nil || !v.requiresGrad {
		return
	}
	var beta float32
	switch {
	case v.grad == nil:
		v.grad = t.b.Alloc(api.F32, v.Shape()...)
	case !v.gradZero:
		beta = 1
	}
	v.gradZero = false
	dst := v.grad
	if shape != nil {
		dst = t.b.Reshape(dst, shape...)
	}
	t.b.MatMul(dst, a, b, transA, transB, 1, beta)
}
