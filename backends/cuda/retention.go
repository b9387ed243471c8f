package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

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
