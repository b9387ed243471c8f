package nn

import (
	"github.com/densessm/densessm/api"
)

// The decode-step entry points of the fused model-family kernels: a
// decode step writes into buffers it made once, outside any tape. Each
// calls the backend's fused kernel when the backend implements its
// interface (then the type assertion is all it adds: nothing is
// allocated), and otherwise runs nn's reference (reference.go) on an
// inference tape and copies the results into the destinations.

// optVar wraps an optional tensor in a Var that needs no gradient (nil for
// nil).
func optVar(x api.Tensor) *Var {
	if x == nil {
		return nil
	}
	return NewVar(x, false)
}

// copyInto copies src into dst after checking that dst has src's shape.
func copyInto(b api.Backend, op, what string, dst, src api.Tensor) {
	if !dst.Shape().Equal(src.Shape()) {
		api.Panicf(api.ErrShape, "nn.%s: %s has shape %v, want %v", op, what, dst.Shape(), src.Shape())
	}
	b.Copy(dst, src)
}

// CausalConv1dInto sets dst [B,T,C] to the causal convolution of x with w,
// bias and prev on b (api.ConvKernels.CausalConv1d, Tape.CausalConv1d).
func CausalConv1dInto(b api.Backend, dst, x, w, bias, prev api.Tensor) {
	if k, ok := b.(api.ConvKernels); ok {
		k.CausalConv1d(dst, x, w, bias, prev)
		return
	}
	y := NewInferenceTape(b).CausalConv1d(NewVar(x, false), NewVar(w, false), optVar(bias), optVar(prev))
	copyInto(b, "CausalConv1dInto", "dst", dst, y.value)
}

// SelectiveScanInto runs the selective scan of in on b
// (api.ScanKernels.SelectiveScan, Tape.SelectiveScan): it sets y [B,T,E],
// and hT [B,E,N] and hs [B,T,E,N] when they are not nil.
func SelectiveScanInto(b api.Backend, y, hT, hs api.Tensor, in api.ScanArgs) {
	if k, ok := b.(api.ScanKernels); ok {
		k.SelectiveScan(y, hT, hs, in)
		return
	}
	vars := ScanVars{X: NewVar(in.X, false), Delta: NewVar(in.Delta, false), A: NewVar(in.A, false),
		Bm: NewVar(in.Bm, false), Cm: NewVar(in.Cm, false), D: optVar(in.D), H0: optVar(in.H0),
		Inject: optVar(in.Inject)}
	yv, hv, hsv := NewInferenceTape(b).SelectiveScan(vars, hT != nil, hs != nil)
	copyInto(b, "SelectiveScanInto", "y", y, yv.value)
	if hT != nil {
		copyInto(b, "SelectiveScanInto", "hT", hT, hv.value)
	}
	if hs != nil {
		copyInto(b, "SelectiveScanInto", "hs", hs, hsv.value)
	}
}

// RotaryInto sets dst to x [..., T, d] rotated by position on b
// (api.RotaryKernels.Rotary, Tape.Rotary), or by the inverse rotation
// when inverse. dst may be x.
func RotaryInto(b api.Backend, dst, x api.Tensor, theta []float32, offset int, inverse bool) {
	if k, ok := b.(api.RotaryKernels); ok {
		k.Rotary(dst, x, theta, offset, inverse)
		return
	}
	t := NewInferenceTape(b)
	xv := NewVar(x, false)
	var y *Var
	if inverse {
		checkRotary(xv, theta)
		y = t.rotaryRef(xv, theta, offset, true)
	} else {
		y = t.Rotary(xv, theta, offset)
	}
	copyInto(b, "RotaryInto", "dst", dst, y.value)
}

// RetentionInto computes retention in the given form on b
// (api.RetentionKernels.Retention, Tape.Retention): o [B,H,T,dv] and, for
// the chunkwise and recurrent forms when sT is not nil, the state after the
// last token sT [B,H,dk,dv]. sT may be in.S0: the state is then advanced
// in place.
func RetentionInto(b api.Backend, form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	if k, ok := b.(api.RetentionKernels); ok {
		k.Retention(form, o, sT, in)
		return
	}
	vars := RetentionVars{Q: NewVar(in.Q, false), K: NewVar(in.K, false), V: NewVar(in.V, false),
		S0: optVar(in.S0), Gamma: in.Gamma, Offset: in.Offset, Chunk: in.Chunk}
	ov, sv := NewInferenceTape(b).Retention(form, vars, sT != nil)
	copyInto(b, "RetentionInto", "o", o, ov.value)
	if sT != nil {
		copyInto(b, "RetentionInto", "sT", sT, sv.value)
	}
}
