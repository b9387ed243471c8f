package nn

import (
	"github.com/densessm/densessm/api"
)

// value returns v's tensor, or nil for a nil Var (an absent optional input).
func value(v *Var) api.Tensor {
	if v == nil {
		return nil
	}
	return v.value
}

// shapeOf returns v's shape, or nil for a nil Var, for error messages.
func shapeOf(v *Var) api.Shape {
	if v == nil {
		return nil
	}
	return v.Shape()
}

// CausalConv1d returns Mamba's depthwise causal convolution with channels
// last (specs/models.md §1 step 2): x [B,T,C], w [C,K], bias [C] or nil,
// prev [B,K-1,C] the K-1 inputs before the first token (oldest first) or nil
// for zeros; the result y [B,T,C] is
//
//	y[b,t,c] = bias[c] + sum_{k<K} w[c,k] * xx[b,t+k,c],  xx = prev ++ x
//
// so w[c,K-1] multiplies the current token. It runs the backend's fused
// kernel when the backend implements api.ConvKernels, else a reference
// composed of api.Kernels ops (see reference.go).
func (t *Tape) CausalConv1d(x, w, bias, prev *Var) *Var {
	xs, ws := x.Shape(), w.Shape()
	ok := len(xs) == 3 && len(ws) == 2 && ws[0] == xs[2] && ws[1] >= 1 &&
		(bias == nil || bias.Shape().Equal(api.Shape{xs[2]})) &&
		(prev == nil || prev.Shape().Equal(api.Shape{xs[0], ws[1] - 1, xs[2]}))
	if !ok {
		api.Panicf(api.ErrShape, "nn.CausalConv1d: x %v, w %v, bias %v, prev %v (want [B,T,C], [C,K], [C], [B,K-1,C])",
			xs, ws, shapeOf(bias), shapeOf(prev))
	}
	k, fused := t.b.(api.ConvKernels)
	if !fused {
		return t.asOneOp([]*Var{x, w, bias, prev}, t.causalConv1dRef(x, w, bias, prev))[0]
	}
	y := t.alloc(xs...)
	k.CausalConv1d(y, x.value, w.value, value(bias), value(prev))
	return t.op(y, []*Var{x, w, bias, prev}, func(dy api.Tensor) {
		sx, sw, sb, sp := t.sink(x), t.sink(w), t.sink(bias), t.sink(prev)
		k.CausalConv1dGrad(sx.dst(), sw.dst(), sb.dst(), sp.dst(), x.value, w.value, value(prev), dy)
		sx.flush()
		sw.flush()
		sb.flush()
		sp.flush()
	})
}

// ScanVars are the inputs of SelectiveScan, as api.ScanArgs but as Vars:
//
//	X, Delta [B,T,E]   input x' and step size Δ (already softplus'ed)
//	A        [E,N]     A = -exp(A_log)
//	Bm, Cm   [B,T,N]   input-dependent B and C
//	D        [E]       skip weight, or nil for none
//	H0       [B,E,N]   initial state, or nil for zeros
//	Inject   [B,T,E,N] added to the state after each update, or nil
type ScanVars struct {
	X, Delta, A, Bm, Cm, D, H0, Inject *Var
}

// SelectiveScan runs the Mamba recurrence with DenseMamba's optional state
// injection (api.ScanKernels.SelectiveScan):
//
//	h_t[e,n]  = exp(Delta_t[e] A[e,n]) h'_{t-1}[e,n] + Delta_t[e] Bm_t[n] X_t[e]
//	h'_t[e,n] = h_t[e,n] + Inject_t[e,n]     (h'_t = h_t without Inject)
//	y_t[e]    = sum_n h'_t[e,n] Cm_t[n] + D[e] X_t[e]
//
// with h'_{-1} = H0. It returns y [B,T,E]; when withState, the final carried
// state hT = h'_{T-1} [B,E,N]; and when withStates, every token's state
// before injection, hs [B,T,E,N] (the outputs not asked for are nil). All
// three are differentiable. It runs the backend's fused kernel when the
// backend implements api.ScanKernels, else a reference composed of
// api.Kernels ops (see reference.go).
func (t *Tape) SelectiveScan(in ScanVars, withState, withStates bool) (y, hT, hs *Var) {
	xs := in.X.Shape()
	if len(xs) != 3 || len(in.A.Shape()) != 2 {
		api.Panicf(api.ErrShape, "nn.SelectiveScan: X %v, A %v (want [B,T,E] and [E,N])", xs, in.A.Shape())
	}
	bsz, tl, e, n := xs[0], xs[1], xs[2], in.A.Shape()[1]
	ok := in.Delta.Shape().Equal(xs) && in.A.Shape()[0] == e &&
		in.Bm.Shape().Equal(api.Shape{bsz, tl, n}) && in.Cm.Shape().Equal(in.Bm.Shape()) &&
		(in.D == nil || in.D.Shape().Equal(api.Shape{e})) &&
		(in.H0 == nil || in.H0.Shape().Equal(api.Shape{bsz, e, n})) &&
		(in.Inject == nil || in.Inject.Shape().Equal(api.Shape{bsz, tl, e, n}))
	if !ok {
		api.Panicf(api.ErrShape, "nn.SelectiveScan: X %v, Delta %v, A %v, Bm %v, Cm %v, D %v, H0 %v, Inject %v",
			xs, in.Delta.Shape(), in.A.Shape(), in.Bm.Shape(), in.Cm.Shape(), shapeOf(in.D), shapeOf(in.H0),
			shapeOf(in.Inject))
	}
	k, fused := t.b.(api.ScanKernels)
	if !fused {
		y, hT, hs = t.selectiveScanRef(in, withState, withStates)
		outs := t.asOneOp([]*Var{in.X, in.Delta, in.A, in.Bm, in.Cm, in.D, in.H0, in.Inject}, y, hT, hs)
		return outs[0], outs[1], outs[2]
	}
	args := api.ScanArgs{X: in.X.value, Delta: in.Delta.value, A: in.A.value, Bm: in.Bm.value,
		Cm: in.Cm.value, D: value(in.D), H0: value(in.H0), Inject: value(in.Inject)}
	// values holds y, then hT and hs when asked for; iT and iS are their
	// indices (-1 when absent).
	values := []api.Tensor{t.alloc(xs...)}
	var hv, hsv api.Tensor
	iT, iS := -1, -1
	if withState {
		hv = t.alloc(bsz, e, n)
		iT, values = len(values), append(values, hv)
	}
	if withStates {
		hsv = t.alloc(bsz, tl, e, n)
		iS, values = len(values), append(values, hsv)
	}
	k.SelectiveScan(values[0], hv, hsv, args)
	ins := []*Var{in.X, in.Delta, in.A, in.Bm, in.Cm, in.D, in.H0, in.Inject}
	outs := t.opN(values, ins, func(dys []api.Tensor) {
		dy := dys[0]
		if dy == nil { // only the states received a gradient
			dy = t.alloc(xs...)
		}
		var dhT, dhs api.Tensor
		if iT >= 0 {
			dhT = dys[iT]
		}
		if iS >= 0 {
			dhs = dys[iS]
		}
		sinks := make([]*gradSink, len(ins))
		for i, v := range ins {
			sinks[i] = t.sink(v)
		}
		g := api.ScanGrads{X: sinks[0].dst(), Delta: sinks[1].dst(), A: sinks[2].dst(), Bm: sinks[3].dst(),
			Cm: sinks[4].dst(), D: sinks[5].dst(), H0: sinks[6].dst(), Inject: sinks[7].dst()}
		k.SelectiveScanGrad(g, args, dy, dhT, dhs)
		for _, s := range sinks {
			s.flush()
		}
	})
	y = outs[0]
	if iT >= 0 {
		hT = outs[iT]
	}
	if iS >= 0 {
		hs = outs[iS]
	}
	return y, hT, hs
}

// Rotary rotates interleaved pairs of the last axis of x [..., T, d] by
// position (torchscale's xpos without scaling): the pair (2i, 2i+1) of row t
// becomes (a cos φ - b sin φ, b cos φ + a sin φ) with φ = (offset+t) *
// theta[i], theta [d/2] (api.RotaryKernels.Rotary). It runs the backend's
// fused kernel when the backend implements api.RotaryKernels, else a
// reference composed of api.Kernels ops (see reference.go).
func (t *Tape) Rotary(x *Var, theta []float32, offset int) *Var {
	checkRotary(x, theta)
	xs := x.Shape()
	k, fused := t.b.(api.RotaryKernels)
	if !fused {
		return t.asOneOp([]*Var{x}, t.rotaryRef(x, theta, offset, false))[0]
	}
	y := t.alloc(xs...)
	k.Rotary(y, x.value, theta, offset, false)
	return t.op(y, []*Var{x}, func(dy api.Tensor) {
		s := t.sink(x)
		if s == nil {
			return
		}
		k.Rotary(s.dst(), dy, theta, offset, true) // a rotation's gradient is the inverse rotation
		s.flush()
	})
}

// checkRotary panics unless x [..., T, d] has d = 2*len(theta).
func checkRotary(x *Var, theta []float32) {
	xs := x.Shape()
	if len(xs) < 2 || xs[len(xs)-1] != 2*len(theta) {
		api.Panicf(api.ErrShape, "nn.Rotary: input %v with %d angles (want [..., T, 2*%d])", xs, len(theta), len(theta))
	}
}

// RetentionVars are the inputs of Retention, as api.RetentionArgs but as
// Vars (per head h):
//
//	Q, K [B,H,T,dk]   rotated queries and keys (K already scaled by dk^-0.5)
//	V    [B,H,T,dv]
//	S0   [B,H,dk,dv]  chunkwise and recurrent forms: the state carried in from
//	                  the Offset tokens before, or nil for zeros (and then
//	                  Offset must be 0); nil for the parallel form
//	Gamma [H]         decay gamma_h in (0,1)
//	Offset            absolute position of the first token
//	Chunk             chunkwise form: tokens per chunk (>= 1)
type RetentionVars struct {
	Q, K, V, S0 *Var
	Gamma       []float32
	Offset      int
	Chunk       int
}

// Retention computes retention in the given form (api.RetentionKernels.Retention):
// it returns o [B,H,T,dv] and, when withState (chunkwise and recurrent forms
// only), the state after the last token sT [B,H,dk,dv] (else nil); both are
// differentiable. The parallel form's row normalisation passes no gradient
// through its denominator, as in torchscale. It runs the backend's fused
// kernel when the backend implements api.RetentionKernels, else a reference
// composed of api.Kernels ops (see reference.go).
func (t *Tape) Retention(form api.RetentionForm, in RetentionVars, withState bool) (o, sT *Var) {
	qs, vs := in.Q.Shape(), in.V.Shape()
	if len(qs) != 4 || len(vs) != 4 {
		api.Panicf(api.ErrShape, "nn.Retention: Q %v, V %v (want [B,H,T,dk] and [B,H,T,dv])", qs, vs)
	}
	bsz, h, tl, dk, dv := qs[0], qs[1], qs[2], qs[3], vs[3]
	ok := in.K.Shape().Equal(qs) && vs[0] == bsz && vs[1] == h && vs[2] == tl && len(in.Gamma) == h &&
		(in.S0 == nil || in.S0.Shape().Equal(api.Shape{bsz, h, dk, dv}))
	if !ok {
		api.Panicf(api.ErrShape, "nn.Retention: Q %v, K %v, V %v, S0 %v, %d decays",
			qs, in.K.Shape(), vs, shapeOf(in.S0), len(in.Gamma))
	}
	switch form {
	case api.RetentionParallel:
		if withState || in.S0 != nil || in.Offset != 0 {
			api.Panicf(api.ErrShape, "nn.Retention: the parallel form takes no state and no offset")
		}
	case api.RetentionChunkwise, api.RetentionRecurrent:
		// The kernel, or the reference, checks the offset and the chunk size.
	default:
		api.Panicf(api.ErrUnsupported, "nn.Retention: form %v", form)
	}
	k, fused := t.b.(api.RetentionKernels)
	if !fused {
		o, sT = t.retentionRef(form, in, withState)
		outs := t.asOneOp([]*Var{in.Q, in.K, in.V, in.S0}, o, sT)
		return outs[0], outs[1]
	}
	args := api.RetentionArgs{Q: in.Q.value, K: in.K.value, V: in.V.value, S0: value(in.S0),
		Gamma: in.Gamma, Offset: in.Offset, Chunk: in.Chunk}
	values := []api.Tensor{t.alloc(bsz, h, tl, dv)}
	var state api.Tensor
	if withState {
		state = t.alloc(bsz, h, dk, dv)
		values = append(values, state)
	}
	k.Retention(form, values[0], state, args)
	ins := []*Var{in.Q, in.K, in.V, in.S0}
	outs := t.opN(values, ins, func(dys []api.Tensor) {
		do := dys[0]
		if do == nil { // only the final state received a gradient
			do = t.alloc(bsz, h, tl, dv)
		}
		var dsT api.Tensor
		if withState {
			dsT = dys[1]
		}
		sq, sk, sv, s0 := t.sink(in.Q), t.sink(in.K), t.sink(in.V), t.sink(in.S0)
		g := api.RetentionGrads{Q: sq.dst(), K: sk.dst(), V: sv.dst(), S0: s0.dst()}
		k.RetentionGrad(form, g, args, do, dsT)
		sq.flush()
		sk.flush()
		sv.flush()
		s0.flush()
	})
	if withState {
		return outs[0], outs[1]
	}
	return outs[0], nil
}
