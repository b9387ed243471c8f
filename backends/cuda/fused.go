package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The fused kernels of api.ConvKernels and api.RotaryKernels; scan.go and
// retention.go hold api.ScanKernels and api.RetentionKernels. What runs on
// the host instead is listed in Unwritten.

var (
	_ api.ConvKernels      = (*Backend)(nil)
	_ api.ScanKernels      = (*Backend)(nil)
	_ api.RotaryKernels    = (*Backend)(nil)
	_ api.RetentionKernels = (*Backend)(nil)
)

// convShapes checks x [B,T,C], w [C,K] with K >= 1 and, when not nil,
// prev [B,K-1,C] (the CPU backend's checks), and returns the sizes, which
// the kernels take as int (a size beyond is api.ErrUnsupported).
func convShapes(op string, xt, wt, pt *Tensor) (B, T, C, K int) {
	if len(xt.shape) != 3 {
		api.Panicf(api.ErrShape, "cuda: %s: x has shape %v, want rank 3", op, xt.shape)
	}
	if len(wt.shape) != 2 {
		api.Panicf(api.ErrShape, "cuda: %s: w has shape %v, want rank 2", op, wt.shape)
	}
	B, T, C, K = xt.shape[0], xt.shape[1], xt.shape[2], wt.shape[1]
	if wt.shape[0] != C || K < 1 {
		api.Panicf(api.ErrShape, "cuda: %s: w has shape %v, want [%d K] with K >= 1 for x %v", op, wt.shape, C, xt.shape)
	}
	if pt != nil {
		wantShape(op, "prev", pt, B, K-1, C)
	}
	if B > 1<<31-1 || T > 1<<31-1 || C > 1<<31-1 || K > 1<<31-1 {
		api.Panicf(api.ErrUnsupported, "cuda: %s: x %v, w %v", op, xt.shape, wt.shape)
	}
	return B, T, C, K
}

// CausalConv1d runs ds_causal_conv1d_f32 (channels last, as the CPU
// backend: x, dst [B,T,C], w [C,K], bias [C] or nil, prev [B,K-1,C] or nil).
func (b *Backend) CausalConv1d(dst, x, w, bias, prev api.Tensor) {
	const op = "CausalConv1d"
	xt, wt, out := b.f32(x, op), b.f32(w, op), b.f32(dst, op)
	bt, pt := b.f32OrNil(bias, op), b.f32OrNil(prev, op)
	B, T, C, K := convShapes(op, xt, wt, pt)
	wantShape(op, "dst", out, B, T, C)
	if bt != nil {
		wantShape(op, "bias", bt, C)
	}
	n := int64(B) * int64(T) * int64(C)
	if n == 0 {
		return
	}
	b.launch("ds_causal_conv1d_f32", kernels.ElementGeometry(n), out.ptr(), xt.ptr(), wt.ptr(), ptrOf(bt), ptrOf(pt),
		int32(B), int32(T), int32(C), int32(K))
}

// CausalConv1dGrad sets dx and dprev with ds_causal_conv1d_grad_x_f32 (one
// thread an element of prev followed by x, summing over the taps as the CPU
// backend) and dw and dbias with ds_causal_conv1d_grad_w_f32 (a block a
// tile of 32 channels and one tap or the bias, summing over batch and time
// in double in a fixed order: no atomics). Each output may be nil; dprev
// may be asked for with prev nil (the gradient at the zero context).
func (b *Backend) CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy api.Tensor) {
	const op = "CausalConv1dGrad"
	xt, wt, up := b.f32(x, op), b.f32(w, op), b.f32(dy, op)
	pt := b.f32OrNil(prev, op)
	B, T, C, K := convShapes(op, xt, wt, pt)
	wantShape(op, "dy", up, B, T, C)
	gx, gw := b.f32OrNil(dx, op), b.f32OrNil(dw, op)
	gb, gp := b.f32OrNil(dbias, op), b.f32OrNil(dprev, op)
	if gx != nil {
		wantShape(op, "dx", gx, B, T, C)
	}
	if gw != nil {
		wantShape(op, "dw", gw, C, K)
	}
	if gb != nil {
		wantShape(op, "dbias", gb, C)
	}
	if gp != nil {
		wantShape(op, "dprev", gp, B, K-1, C)
	}
	if n := int64(B) * int64(T+K-1) * int64(C); n > 0 && (gx != nil || gp != nil) {
		b.launch("ds_causal_conv1d_grad_x_f32", kernels.ElementGeometry(n), ptrOf(gx), ptrOf(gp), wt.ptr(), up.ptr(),
			int32(B), int32(T), int32(C), int32(K))
	}
	if C > 0 && (gw != nil || gb != nil) {
		g, err := kernels.ConvGradWGeometry(C, K)
		b.check(op, err)
		b.launch("ds_causal_conv1d_grad_w_f32", g, ptrOf(gw), ptrOf(gb), xt.ptr(), ptrOf(pt), up.ptr(),
			int32(B), int32(T), int32(C), int32(K))
	}
}

// Rotary runs ds_rotary_f32, theta kept on the device (constF32).
func (b *Backend) Rotary(dst, x api.Tensor, theta []float32, offset int, inverse bool) {
	const op = "Rotary"
	xt, out := b.f32(x, op), b.f32(dst, op)
	if len(xt.shape) < 2 {
		api.Panicf(api.ErrShape, "cuda: %s: x has shape %v, want [..., T, d]", op, xt.shape)
	}
	sameShape(op, out, xt)
	T, d := xt.shape.Dim(-2), xt.shape.Dim(-1)
	if d%2 != 0 || len(theta) != d/2 {
		api.Panicf(api.ErrShape, "cuda: %s: x %v with %d thetas, want an even last axis and d/2 thetas", op, xt.shape, len(theta))
	}
	if offset < 0 {
		api.Panicf(api.ErrOutOfRange, "cuda: %s: negative offset %d", op, offset)
	}
	half := d / 2
	if xt.numel() == 0 || half == 0 {
		return
	}
	th, release := b.constF32(theta)
	defer release()
	rows := int64(xt.numel() / d)
	inv := int32(0)
	if inverse {
		inv = 1
	}
	b.launch("ds_rotary_f32", kernels.ElementGeometry(rows*int64(half)), out.ptr(), xt.ptr(), th.ptr(),
		rows, int32(T), int32(half), int64(offset), inv)
}

// f32Bytes returns v's little-endian bytes.
func f32Bytes(v []float32) []byte {
	raw := make([]byte, 4*len(v))
	if err := api.EncodeFloat32(raw, api.F32, v); err != nil {
		panic(err)
	}
	return raw
}
