package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The fused kernels of api.ConvKernels, api.ScanKernels,
// api.RotaryKernels and api.RetentionKernels. The causal convolution's and
// rotary's forward passes, the selective scan's forward pass and
// retention's recurrent form (the decode steps) run on the device; the
// rest runs on the host until written (Unwritten).

var (
	_ api.ConvKernels      = (*Backend)(nil)
	_ api.ScanKernels      = (*Backend)(nil)
	_ api.RotaryKernels    = (*Backend)(nil)
	_ api.RetentionKernels = (*Backend)(nil)
)

// CausalConv1d runs ds_causal_conv1d_f32 (channels last, as the CPU
// backend: x, dst [B,T,C], w [C,K], bias [C] or nil, prev [B,K-1,C] or nil).
func (b *Backend) CausalConv1d(dst, x, w, bias, prev api.Tensor) {
	const op = "CausalConv1d"
	xt, wt, out := b.f32(x, op), b.f32(w, op), b.f32(dst, op)
	bt, pt := b.f32OrNil(bias, op), b.f32OrNil(prev, op)
	if len(xt.shape) != 3 {
		api.Panicf(api.ErrShape, "cuda: %s: x has shape %v, want rank 3", op, xt.shape)
	}
	if len(wt.shape) != 2 {
		api.Panicf(api.ErrShape, "cuda: %s: w has shape %v, want rank 2", op, wt.shape)
	}
	B, T, C, K := xt.shape[0], xt.shape[1], xt.shape[2], wt.shape[1]
	if wt.shape[0] != C || K < 1 {
		api.Panicf(api.ErrShape, "cuda: %s: w has shape %v, want [%d K] with K >= 1 for x %v", op, wt.shape, C, xt.shape)
	}
	if pt != nil {
		wantShape(op, "prev", pt, B, K-1, C)
	}
	wantShape(op, "dst", out, B, T, C)
	if bt != nil {
		wantShape(op, "bias", bt, C)
	}
	n := int64(B) * int64(T) * int64(C)
	if n == 0 {
		return
	}
	if B > 1<<31-1 || T > 1<<31-1 || C > 1<<31-1 || K > 1<<31-1 {
		api.Panicf(api.ErrUnsupported, "cuda: %s: x %v, w %v", op, xt.shape, wt.shape)
	}
	b.launch("ds_causal_conv1d_f32", kernels.ElementGeometry(n), out.ptr(), xt.ptr(), wt.ptr(), ptrOf(bt), ptrOf(pt),
		int32(B), int32(T), int32(C), int32(K))
}

// CausalConv1dGrad runs on the host.
func (b *Backend) CausalConv1dGrad(dx, dw, dbias, dprev, x, w, prev, dy api.Tensor) {
	b.onHost("CausalConv1dGrad", func(c api.Backend, h *hostCall) {
		c.(api.ConvKernels).CausalConv1dGrad(h.out(dx), h.out(dw), h.out(dbias), h.out(dprev), h.in(x), h.in(w), h.in(prev), h.in(dy))
	})
}

// Rotary runs ds_rotary_f32, theta uploaded for the call.
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
	th := b.Alloc(api.F32, half)
	defer b.Free(th)
	b.Upload(th, f32Bytes(theta))
	rows := int64(xt.numel() / d)
	inv := int32(0)
	if inverse {
		inv = 1
	}
	b.launch("ds_rotary_f32", kernels.ElementGeometry(rows*int64(half)), out.ptr(), xt.ptr(), th.(*Tensor).ptr(),
		rows, int32(T), int32(half), int64(offset), inv)
}

// scanOnHost runs the selective scan on the host.
func (b *Backend) scanOnHost(op string, y, hT, hs api.Tensor, in api.ScanArgs) {
	b.onHost(op, func(c api.Backend, h *hostCall) {
		c.(api.ScanKernels).SelectiveScan(h.out(y), h.out(hT), h.out(hs), api.ScanArgs{
			X: h.in(in.X), Delta: h.in(in.Delta), A: h.in(in.A), Bm: h.in(in.Bm), Cm: h.in(in.Cm),
			D: h.in(in.D), H0: h.in(in.H0), Inject: h.in(in.Inject),
		})
	})
}

// SelectiveScan runs ds_selective_scan_f32 (N up to 256; more runs on the
// host).
func (b *Backend) SelectiveScan(y, hT, hs api.Tensor, in api.ScanArgs) {
	const op = "selective scan"
	x, dt := b.f32(in.X, op), b.f32(in.Delta, op)
	if len(x.shape) != 3 {
		api.Panicf(api.ErrShape, "cuda: %s: X %v, want [B,T,E]", op, x.shape)
	}
	B, T, E := x.shape[0], x.shape[1], x.shape[2]
	a := b.f32(in.A, op)
	if len(a.shape) != 2 || a.shape[0] != E {
		api.Panicf(api.ErrShape, "cuda: %s: A %v, want [%d,N]", op, a.shape, E)
	}
	N := a.shape[1]
	wantShape(op, "Delta", dt, B, T, E)
	bm, cm := b.f32(in.Bm, op), b.f32(in.Cm, op)
	wantShape(op, "Bm", bm, B, T, N)
	wantShape(op, "Cm", cm, B, T, N)
	dd, h0, inj := b.f32OrNil(in.D, op), b.f32OrNil(in.H0, op), b.f32OrNil(in.Inject, op)
	if dd != nil {
		wantShape(op, "D", dd, E)
	}
	if h0 != nil {
		wantShape(op, "H0", h0, B, E, N)
	}
	if inj != nil {
		wantShape(op, "Inject", inj, B, T, E, N)
	}
	yt, ht, hst := b.f32(y, op), b.f32OrNil(hT, op), b.f32OrNil(hs, op)
	wantShape(op, "y", yt, B, T, E)
	if ht != nil {
		wantShape(op, "hT", ht, B, E, N)
	}
	if hst != nil {
		wantShape(op, "hs", hst, B, T, E, N)
	}
	if B == 0 || E == 0 || N == 0 {
		return // no states, no outputs with elements
	}
	g, tc, err := kernels.ScanGeometry(B, E, N)
	if err != nil {
		b.scanOnHost("SelectiveScan (N > 256)", y, hT, hs, in)
		return
	}
	b.launch("ds_selective_scan_f32", g, yt.ptr(), ptrOf(ht), ptrOf(hst), x.ptr(), dt.ptr(), a.ptr(), bm.ptr(), cm.ptr(),
		ptrOf(dd), ptrOf(h0), ptrOf(inj), int32(T), int32(E), int32(N), int32(tc))
}

// SelectiveScanGrad runs on the host.
func (b *Backend) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT, dhs api.Tensor) {
	b.onHost("SelectiveScanGrad", func(c api.Backend, h *hostCall) {
		c.(api.ScanKernels).SelectiveScanGrad(api.ScanGrads{
			X: h.out(g.X), Delta: h.out(g.Delta), A: h.out(g.A), Bm: h.out(g.Bm), Cm: h.out(g.Cm),
			D: h.out(g.D), H0: h.out(g.H0), Inject: h.out(g.Inject),
		}, api.ScanArgs{
			X: h.in(in.X), Delta: h.in(in.Delta), A: h.in(in.A), Bm: h.in(in.Bm), Cm: h.in(in.Cm),
			D: h.in(in.D), H0: h.in(in.H0), Inject: h.in(in.Inject),
		}, h.in(dy), h.in(dhT), h.in(dhs))
	})
}

// hostRetention is in's tensors copied to the host.
func hostRetention(h *hostCall, in api.RetentionArgs) api.RetentionArgs {
	return api.RetentionArgs{Q: h.in(in.Q), K: h.in(in.K), V: h.in(in.V), S0: h.in(in.S0), Gamma: in.Gamma, Offset: in.Offset, Chunk: in.Chunk}
}

// Retention runs ds_retention_recurrent_f32 for the recurrent form; the
// parallel and chunkwise forms run on the host.
func (b *Backend) Retention(form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	if form != api.RetentionRecurrent {
		b.onHost("Retention (parallel, chunkwise)", func(c api.Backend, h *hostCall) {
			c.(api.RetentionKernels).Retention(form, h.out(o), h.out(sT), hostRetention(h, in))
		})
		return
	}
	const op = "retention"
	q, k, v := b.f32(in.Q, op), b.f32(in.K, op), b.f32(in.V, op)
	if len(q.shape) != 4 {
		api.Panicf(api.ErrShape, "cuda: %s: Q %v, want [B,H,T,dk]", op, q.shape)
	}
	B, H, T, dk := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	wantShape(op, "K", k, B, H, T, dk)
	if len(v.shape) != 4 {
		api.Panicf(api.ErrShape, "cuda: %s: V %v, want [B,H,T,dv]", op, v.shape)
	}
	dv := v.shape[3]
	wantShape(op, "V", v, B, H, T, dv)
	ot, st, s0 := b.f32(o, op), b.f32OrNil(sT, op), b.f32OrNil(in.S0, op)
	wantShape(op, "o", ot, B, H, T, dv)
	if st != nil {
		wantShape(op, "sT", st, B, H, dk, dv)
	}
	if s0 != nil {
		wantShape(op, "S0", s0, B, H, dk, dv)
	}
	if len(in.Gamma) != H {
		api.Panicf(api.ErrShape, "cuda: %s: %d gammas for %d heads", op, len(in.Gamma), H)
	}
	for _, g := range in.Gamma {
		if !(g > 0 && g < 1) {
			api.Panicf(api.ErrOutOfRange, "cuda: %s: gamma %v outside (0,1)", op, g)
		}
	}
	if in.Offset < 0 || (in.Offset > 0 && s0 == nil) {
		api.Panicf(api.ErrOutOfRange, "cuda: %s: offset %d (with a state: %t)", op, in.Offset, s0 != nil)
	}
	if B*H == 0 || dv == 0 {
		return
	}
	g, err := kernels.RetentionGeometry(B, H, dk, dv)
	if err != nil {
		b.onHost("Retention (recurrent, dk > 512)", func(c api.Backend, h *hostCall) {
			c.(api.RetentionKernels).Retention(form, h.out(o), h.out(sT), hostRetention(h, in))
		})
		return
	}
	gamma := b.Alloc(api.F32, H)
	defer b.Free(gamma)
	b.Upload(gamma, f32Bytes(in.Gamma))
	b.launch("ds_retention_recurrent_f32", g, ot.ptr(), ptrOf(st), q.ptr(), k.ptr(), v.ptr(), ptrOf(s0), gamma.(*Tensor).ptr(),
		int32(H), int32(T), int32(dk), int32(dv), int64(in.Offset))
}

// RetentionGrad runs on the host.
func (b *Backend) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	b.onHost("RetentionGrad", func(c api.Backend, h *hostCall) {
		c.(api.RetentionKernels).RetentionGrad(form, api.RetentionGrads{Q: h.out(g.Q), K: h.out(g.K), V: h.out(g.V), S0: h.out(g.S0)},
			hostRetention(h, in), h.in(do), h.in(dsT))
	})
}

// f32Bytes returns v's little-endian bytes.
func f32Bytes(v []float32) []byte {
	raw := make([]byte, 4*len(v))
	if err := api.EncodeFloat32(raw, api.F32, v); err != nil {
		panic(err)
	}
	return raw
}
