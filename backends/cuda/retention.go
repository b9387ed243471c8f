package cuda

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// Retention's three forms and its gradient on the device. The recurrent
// form is one kernel (ds_retention_recurrent_f32, dk up to 512). The
// parallel and chunkwise forms, the recurrent form with a larger dk and
// every gradient are batched cuBLAS products over the heads (one
// cublasSgemmStridedBatched a product, the heads its batch) with the small
// kernels of retention.cu between them for the decay factors, following
// the CPU backend's algorithm (backends/cpu/retention.go) product by
// product. Their scratch comes from the allocator; the heads are taken in
// passes of as many as keep it within retScratchFloats.

// retScratchFloats bounds the scratch of one pass over the heads, in
// floats (256 MiB); a single head may need more (the parallel form's T x T
// scores). A variable so that a test can force several passes.
var retScratchFloats = 1 << 26

// retRecurrentChunk is the chunk length with which the recurrent form is
// computed by the chunkwise algorithm (its gradient, and its forward pass
// beyond the kernel's dk): both forms compute the same function, as the
// CPU backend's RetentionGrad uses (recurrentGradChunk there).
const retRecurrentChunk = 32

// retCall is a retention call's checked inputs.
type retCall struct {
	form              api.RetentionForm
	B, H, T, dk, dv   int
	q, k, v, s0       *Tensor // s0 nil when absent
	gamma             []float32
	offset, chunk     int // chunk: the chunk length of the chunkwise algorithm
	heads, stateElems int // B*H, dk*dv
}

// retentionInputs checks form and in (see api.RetentionArgs) as the CPU
// backend does: sizes that do not fit panic with ErrShape, a decay outside
// (0,1), a negative offset, an offset without a state and a chunk length
// below 1 with ErrOutOfRange.
func (b *Backend) retentionInputs(op string, form api.RetentionForm, in api.RetentionArgs) *retCall {
	if form != api.RetentionParallel && form != api.RetentionChunkwise && form != api.RetentionRecurrent {
		api.Panicf(api.ErrUnsupported, "cuda: %s: retention form %d", op, form)
	}
	q, k, v := b.f32(in.Q, op), b.f32(in.K, op), b.f32(in.V, op)
	if len(q.shape) != 4 {
		api.Panicf(api.ErrShape, "cuda: %s: Q %v, want [B,H,T,dk]", op, q.shape)
	}
	if len(v.shape) != 4 {
		api.Panicf(api.ErrShape, "cuda: %s: V %v, want [B,H,T,dv]", op, v.shape)
	}
	r := &retCall{form: form, B: q.shape[0], H: q.shape[1], T: q.shape[2], dk: q.shape[3], dv: v.shape[3],
		q: q, k: k, v: v, s0: b.f32OrNil(in.S0, op), gamma: in.Gamma, offset: in.Offset, chunk: in.Chunk}
	r.heads, r.stateElems = r.B*r.H, r.dk*r.dv
	wantShape(op, "K", k, r.B, r.H, r.T, r.dk)
	wantShape(op, "V", v, r.B, r.H, r.T, r.dv)
	if len(in.Gamma) != r.H {
		api.Panicf(api.ErrShape, "cuda: %s: %d gammas for %d heads", op, len(in.Gamma), r.H)
	}
	for _, g := range in.Gamma {
		if !(g > 0 && g < 1) {
			api.Panicf(api.ErrOutOfRange, "cuda: %s: gamma %v outside (0,1)", op, g)
		}
	}
	if in.Offset < 0 || (in.Offset > 0 && r.s0 == nil) {
		api.Panicf(api.ErrOutOfRange, "cuda: %s: offset %d (with a state: %t)", op, in.Offset, r.s0 != nil)
	}
	if r.s0 != nil {
		if form == api.RetentionParallel {
			api.Panicf(api.ErrShape, "cuda: %s: the parallel form takes no initial state, got S0 %v", op, r.s0.shape)
		}
		wantShape(op, "S0", r.s0, r.B, r.H, r.dk, r.dv)
	}
	switch form {
	case api.RetentionChunkwise:
		if in.Chunk < 1 {
			api.Panicf(api.ErrOutOfRange, "cuda: %s: chunk length %d, want >= 1", op, in.Chunk)
		}
	case api.RetentionRecurrent:
		r.chunk = retRecurrentChunk
	}
	return r
}

// state checks a state tensor t (sT or dsT): nil, or [B,H,dk,dv] for the
// chunkwise and recurrent forms (ErrShape for the parallel form).
func (r *retCall) state(b *Backend, op, what string, t api.Tensor) *Tensor {
	s := b.f32OrNil(t, op)
	if s == nil {
		return nil
	}
	if r.form == api.RetentionParallel {
		api.Panicf(api.ErrShape, "cuda: %s: the parallel form has no state, got %s %v", op, what, s.shape)
	}
	wantShape(op, what, s, r.B, r.H, r.dk, r.dv)
	return s
}

// empty reports whether the call has no product to compute: no token, or
// dk or dv zero (then o and the gradients are zero and a state passes
// through).
func (r *retCall) empty() bool { return r.T == 0 || r.dk == 0 || r.dv == 0 }

// gammaHeads returns the decay of every head of the batch on the device,
// gamma[b*H+h] = Gamma[h], the form retention.cu's factor kernels take
// (constF32: the caller calls release when done).
func (b *Backend) gammaHeads(r *retCall) (gamma *Tensor, release func()) {
	g := make([]float32, r.heads)
	for i := range g {
		g[i] = r.gamma[i%r.H]
	}
	return b.constF32(g)
}

// retPass returns the heads per pass for a per-head scratch of perHead
// floats: as many as fit in retScratchFloats, at least one.
func retPass(heads, perHead int) int {
	return max(1, min(heads, retScratchFloats/max(perHead, 1)))
}

// retAt is the address of the element off floats into t.
func retAt(t *Tensor, off int) driver.DevicePtr { return t.ptr() + driver.DevicePtr(4*int64(off)) }

// retScratch allocates an F32 tensor of n elements (zeroed) for the call.
func (b *Backend) retScratch(n int) *Tensor { return b.Alloc(api.F32, n).(*Tensor) }

// retCopy copies n floats from src to dst on the device (nothing when
// they are the same).
func (b *Backend) retCopy(dst, src driver.DevicePtr, n int) {
	if n > 0 && dst != src {
		b.check("copy", b.dev.copyDtoD(dst, src, 4*int64(n)))
	}
}

// retZero sets n floats at p to zero.
func (b *Backend) retZero(p driver.DevicePtr, n int) {
	if n > 0 {
		b.check("fill", b.dev.fill32(p, 0, int64(n)))
	}
}

// retGemm queues, for batch heads, the row-major product C_i = op(A_i)
// op(B_i) + beta C_i with C_i [m,n], op(A_i) [m,k] and op(B_i) [k,n], each
// matrix's rows contiguous (A_i [m,k], or [k,m] when transA; B_i [k,n], or
// [n,k] when transB) and X_i at X + i*strideX floats: one
// cublasSgemmStridedBatched (driver.RowMajor's operand swap).
func (b *Backend) retGemm(transA, transB bool, m, n, k int, a driver.DevicePtr, sa int, x driver.DevicePtr, sb int, beta float32,
	c driver.DevicePtr, sc int, batch int) {
	g := driver.RowMajor(m, n, k, transA, transB)
	b.check("cublasSgemm", b.dev.gemm(gemmCall{
		ta: g.TA, tb: g.TB, m: g.M, n: g.N, k: g.K, alpha: 1, beta: beta,
		a: x, lda: g.LDA, strideA: int64(sb),
		b: a, ldb: g.LDB, strideB: int64(sa),
		c: c, ldc: g.LDC, strideC: int64(sc),
		batch: batch,
	}))
}

// retScaleRows launches ds_retention_scale_rows_f32: X [n, L, width] from
// rows t0.. of src [n heads from h0, T, width], scaled by the chunk's write
// (reads false) or read factors.
func (b *Backend) retScaleRows(r *retCall, X, src *Tensor, gamma driver.DevicePtr, h0, n, t0, L, width int, reads bool) {
	var rd int32
	if reads {
		rd = 1
	}
	total := int64(n) * int64(L) * int64(width)
	b.launch("ds_retention_scale_rows_f32", kernels.ElementGeometry(total), X.ptr(), retAt(src, h0*r.T*width), gamma,
		int32(r.T), int32(t0), int32(L), int32(width), int64(r.offset), rd, total)
}

// retDecayMask launches ds_retention_decay_mask_f32 on A [n, L, L].
func (b *Backend) retDecayMask(A *Tensor, den driver.DevicePtr, gamma driver.DevicePtr, n, L, p0 int) {
	total := int64(n) * int64(L) * int64(L)
	b.launch("ds_retention_decay_mask_f32", kernels.ElementGeometry(total), A.ptr(), den, gamma, int32(L), int64(p0), total)
}

// retStateDecay launches ds_retention_state_decay_f32: dst = decay * src
// for n states, across the chunk of L tokens from position p0 >= 1.
func (b *Backend) retStateDecay(r *retCall, dst, src, gamma driver.DevicePtr, n, L, p0 int) {
	total := int64(n) * int64(r.stateElems)
	b.launch("ds_retention_state_decay_f32", kernels.ElementGeometry(total), dst, src, gamma, int32(L), int64(p0), int64(r.stateElems), total)
}

// Retention computes retention in the given form (see api.RetentionArgs)
// on the device: the recurrent form with ds_retention_recurrent_f32 (dk up
// to 512; beyond, by the chunkwise algorithm), the parallel form with
// retParallel and the chunkwise form with retChunkwise.
func (b *Backend) Retention(form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	const op = "retention"
	r := b.retentionInputs(op, form, in)
	ot := b.f32(o, op)
	wantShape(op, "o", ot, r.B, r.H, r.T, r.dv)
	st := r.state(b, op, "sT", sT)
	if r.heads == 0 {
		return
	}
	if form == api.RetentionRecurrent {
		if g, err := kernels.RetentionGeometry(r.B, r.H, r.dk, r.dv); err == nil {
			b.retRecurrent(r, g, ot, st)
			return
		}
	}
	if form == api.RetentionParallel {
		b.retParallel(r, ot)
	} else {
		b.retChunkwise(r, ot, st)
	}
}

// retRecurrent runs ds_retention_recurrent_f32 with its geometry g (T = 0
// copies S0, or zeros, into sT).
func (b *Backend) retRecurrent(r *retCall, g kernels.Geometry, o, sT *Tensor) {
	if r.dv == 0 {
		return // no state, no output with elements
	}
	gamma, release := b.constF32(r.gamma)
	defer release()
	b.launch("ds_retention_recurrent_f32", g, o.ptr(), ptrOf(sT), r.q.ptr(), r.k.ptr(), r.v.ptr(), ptrOf(r.s0), gamma.ptr(),
		int32(r.H), int32(r.T), int32(r.dk), int32(r.dv), int64(r.offset))
}

// retParallel computes the parallel form, in passes of n heads from h0:
//
//	A = Q K^T                               (batched GEMM, [n,T,T] scratch)
//	P = ds_retention_parallel_scores_f32(A)  (mask, decay, row normaliser)
//	O = P V                                 (batched GEMM)
func (b *Backend) retParallel(r *retCall, o *Tensor) {
	if r.empty() {
		b.Fill(o, 0)
		return
	}
	T, dv := r.T, r.dv
	gamma, release := b.gammaHeads(r)
	defer release()
	pass := retPass(r.heads, T*T+T)
	A, den := b.retScratch(pass*T*T), b.retScratch(pass*T)
	defer b.Free(A)
	defer b.Free(den)
	for h0 := 0; h0 < r.heads; h0 += pass {
		n := min(pass, r.heads-h0)
		b.retScores(r, A, den, retAt(gamma, h0), h0, n)
		b.retGemm(false, false, T, dv, T, A.ptr(), T*T, retAt(r.v, h0*T*dv), T*dv, 0, retAt(o, h0*T*dv), T*dv, n)
	}
}

// retScores sets A [n,T,T] to the parallel form's normalised scores of the
// n heads from h0 and den [n,T] to their row normalisers.
func (b *Backend) retScores(r *retCall, A, den *Tensor, gamma driver.DevicePtr, h0, n int) {
	T, dk := r.T, r.dk
	b.retGemm(false, true, T, T, dk, retAt(r.q, h0*T*dk), T*dk, retAt(r.k, h0*T*dk), T*dk, 0, A.ptr(), T*T, n)
	g, err := kernels.RowGeometry(n * T)
	b.check("ds_retention_parallel_scores_f32", err)
	b.launch("ds_retention_parallel_scores_f32", g, A.ptr(), den.ptr(), gamma, int32(T), int64(n*T))
}

// retChunkwise computes the chunkwise form (and the recurrent form beyond
// ds_retention_recurrent_f32's dk) with chunks of L = min(r.chunk, T)
// tokens, in passes of n heads from h0. The state S [n,dk,dv] is sT when
// wanted (S0 copied in first; sT may be S0), else scratch. Per chunk of Lc
// tokens from t0 (P0 = offset + t0), with the factors of
// ds_retention_scale_rows_f32 and ds_retention_state_decay_f32, as the CPU
// backend's chunk:
//
//	A  = (Q K^T) * M                   (GEMM, ds_retention_decay_mask_f32)
//	O  = A V + diag(cf) Q S            (GEMMs; the second when P0 > 0)
//	S <- decay S + (diag(wf) K)^T V    (GEMM; S not read when P0 = 0)
func (b *Backend) retChunkwise(r *retCall, o, sT *Tensor) {
	if r.empty() {
		b.Fill(o, 0)
		if sT != nil && r.s0 != nil {
			b.retCopy(sT.ptr(), r.s0.ptr(), sT.numel())
		} else if sT != nil {
			b.Fill(sT, 0)
		}
		return
	}
	T, dk, dv, SE := r.T, r.dk, r.dv, r.stateElems
	L, width := min(r.chunk, T), max(dk, dv)
	gamma, release := b.gammaHeads(r)
	defer release()
	perHead := L*L + L*width
	if sT == nil {
		perHead += SE
	}
	pass := retPass(r.heads, perHead)
	A, X := b.retScratch(pass*L*L), b.retScratch(pass*L*width)
	defer b.Free(A)
	defer b.Free(X)
	S := sT
	if S == nil {
		S = b.retScratch(pass * SE)
		defer b.Free(S)
	}
	for h0 := 0; h0 < r.heads; h0 += pass {
		n := min(pass, r.heads-h0)
		g := retAt(gamma, h0)
		s := S.ptr()
		if sT != nil {
			s = retAt(sT, h0*SE)
		}
		if r.s0 != nil {
			b.retCopy(s, retAt(r.s0, h0*SE), n*SE)
		} // else S is not read: the first chunk starts the sequence
		for t0 := 0; t0 < T; t0 += L {
			Lc, p0 := min(L, T-t0), r.offset+t0
			qc, kc, vc, oc := retAt(r.q, (h0*T+t0)*dk), retAt(r.k, (h0*T+t0)*dk), retAt(r.v, (h0*T+t0)*dv), retAt(o, (h0*T+t0)*dv)
			b.retGemm(false, true, Lc, Lc, dk, qc, T*dk, kc, T*dk, 0, A.ptr(), Lc*Lc, n)
			b.retDecayMask(A, 0, g, n, Lc, p0)
			b.retGemm(false, false, Lc, dv, Lc, A.ptr(), Lc*Lc, vc, T*dv, 0, oc, T*dv, n)
			if p0 > 0 {
				b.retScaleRows(r, X, r.q, g, h0, n, t0, Lc, dk, true)
				b.retGemm(false, false, Lc, dv, dk, X.ptr(), Lc*dk, s, SE, 1, oc, T*dv, n)
			}
			b.retAdvance(r, X, g, h0, n, t0, Lc, r.k, r.v, false, s, s)
		}
	}
}

// retGrads are RetentionGrad's checked outputs (nil when not wanted).
type retGrads struct{ q, k, v, s0 *Tensor }

// RetentionGrad sets the gradients of Retention's inputs from do and, for
// the chunkwise and recurrent forms, dsT (nil for zero), overwriting them:
// the parallel form with retParallelGrad (its row normalisers constants),
// the chunkwise and recurrent forms with retChunkGrad (the recurrent form
// by the chunkwise backward pass with chunks of retRecurrentChunk tokens,
// as on the CPU backend).
func (b *Backend) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	const op = "retention gradient"
	r := b.retentionInputs(op, form, in)
	dOut := b.f32(do, op)
	wantShape(op, "do", dOut, r.B, r.H, r.T, r.dv)
	dst := r.state(b, op, "dsT", dsT)
	if g.S0 != nil && in.S0 == nil {
		api.Panicf(api.ErrShape, "cuda: %s: gradient of S0 asked for without S0", op)
	}
	part := func(t api.Tensor, what string, shape ...int) *Tensor {
		x := b.f32OrNil(t, op)
		if x != nil {
			wantShape(op, what, x, shape...)
		}
		return x
	}
	gr := retGrads{
		q:  part(g.Q, "gradient Q", r.B, r.H, r.T, r.dk),
		k:  part(g.K, "gradient K", r.B, r.H, r.T, r.dk),
		v:  part(g.V, "gradient V", r.B, r.H, r.T, r.dv),
		s0: part(g.S0, "gradient S0", r.B, r.H, r.dk, r.dv),
	}
	if r.heads == 0 {
		return
	}
	if r.empty() { // the products are zero; dS0 is dsT
		for _, t := range []*Tensor{gr.q, gr.k, gr.v} {
			if t != nil {
				b.Fill(t, 0)
			}
		}
		if gr.s0 != nil && dst != nil {
			b.retCopy(gr.s0.ptr(), dst.ptr(), gr.s0.numel())
		} else if gr.s0 != nil {
			b.Fill(gr.s0, 0)
		}
		return
	}
	if form == api.RetentionParallel {
		b.retParallelGrad(r, gr, dOut)
		return
	}
	b.retChunkGrad(r, gr, dOut, dst)
}

// retParallelGrad differentiates the parallel form with the row
// normalisers den_n held constant, in passes of n heads, as the CPU
// backend's parallelGrad: with P the normalised scores (recomputed by
// retScores) and W[n,m] = gamma^(n-m) r_n / den_n for m <= n,
//
//	dV = P^T dO
//	dS = (dO V^T) * W      (GEMM, ds_retention_decay_mask_f32 with den)
//	dQ = dS K,  dK = dS^T Q
//
// dS reuses P's scratch.
func (b *Backend) retParallelGrad(r *retCall, gr retGrads, do *Tensor) {
	T, dk, dv := r.T, r.dk, r.dv
	gamma, release := b.gammaHeads(r)
	defer release()
	pass := retPass(r.heads, T*T+T)
	A, den := b.retScratch(pass*T*T), b.retScratch(pass*T)
	defer b.Free(A)
	defer b.Free(den)
	for h0 := 0; h0 < r.heads; h0 += pass {
		n := min(pass, r.heads-h0)
		g := retAt(gamma, h0)
		b.retScores(r, A, den, g, h0, n)
		dob := retAt(do, h0*T*dv)
		if gr.v != nil {
			b.retGemm(true, false, T, dv, T, A.ptr(), T*T, dob, T*dv, 0, retAt(gr.v, h0*T*dv), T*dv, n)
		}
		if gr.q == nil && gr.k == nil {
			continue
		}
		b.retGemm(false, true, T, T, dv, dob, T*dv, retAt(r.v, h0*T*dv), T*dv, 0, A.ptr(), T*T, n)
		b.retDecayMask(A, den.ptr(), g, n, T, 0)
		if gr.q != nil {
			b.retGemm(false, false, T, dk, T, A.ptr(), T*T, retAt(r.k, h0*T*dk), T*dk, 0, retAt(gr.q, h0*T*dk), T*dk, n)
		}
		if gr.k != nil {
			b.retGemm(true, false, T, dk, T, A.ptr(), T*T, retAt(r.q, h0*T*dk), T*dk, 0, retAt(gr.k, h0*T*dk), T*dk, n)
		}
	}
}

// retChunkGrad differentiates the chunkwise form (chunks of L = min(chunk,
// T) tokens) from do and dsT (nil for zero), in passes of n heads, as the
// CPU backend's chunkGrad. When dQ is wanted, a forward pass first stores
// the state entering each chunk ci in states[ci] ([nc][n,dk,dv]). The
// backward pass walks the chunks from last to first carrying G = dL/dS
// for the state after the chunk (in dS0 when wanted, else scratch; it
// starts as dsT). Per chunk, with Sp the state entering it and the factors
// of retChunkwise:
//
//	dV = ((Q K^T) * M)^T dO + diag(wf) K G
//	dS = (dO V^T) * M                        (reusing A's scratch)
//	dK = dS^T Q + diag(wf) V G^T
//	dQ = dS K + diag(cf) dO Sp^T              (the second when P0 > 0)
//	G <- decay G + (diag(cf) Q)^T dO          (G = 0 when P0 = 0)
//
// and dS0 is the final G.
func (b *Backend) retChunkGrad(r *retCall, gr retGrads, do, dsT *Tensor) {
	T, dk, dv, SE := r.T, r.dk, r.dv, r.stateElems
	L, width := min(r.chunk, T), max(dk, dv)
	nc := (T + L - 1) / L
	gamma, release := b.gammaHeads(r)
	defer release()
	perHead := L*L + L*width
	if gr.q != nil {
		perHead += nc * SE
	}
	if gr.s0 == nil {
		perHead += SE
	}
	pass := retPass(r.heads, perHead)
	A, X := b.retScratch(pass*L*L), b.retScratch(pass*L*width)
	defer b.Free(A)
	defer b.Free(X)
	var states, G *Tensor
	if gr.q != nil {
		states = b.retScratch(nc * pass * SE)
		defer b.Free(states)
	}
	if gr.s0 == nil {
		G = b.retScratch(pass * SE)
		defer b.Free(G)
	}
	for h0 := 0; h0 < r.heads; h0 += pass {
		n := min(pass, r.heads-h0)
		g := retAt(gamma, h0)
		if states != nil {
			b.retChunkStates(r, states, X, g, h0, n, L, nc)
		}
		gs := ptrOf(G)
		if gr.s0 != nil {
			gs = retAt(gr.s0, h0*SE)
		}
		if dsT != nil {
			b.retCopy(gs, retAt(dsT, h0*SE), n*SE)
		} else {
			b.retZero(gs, n*SE)
		}
		for ci := nc - 1; ci >= 0; ci-- {
			t0 := ci * L
			Lc, p0 := min(L, T-t0), r.offset+t0
			qc, kc := retAt(r.q, (h0*T+t0)*dk), retAt(r.k, (h0*T+t0)*dk)
			vc, doc := retAt(r.v, (h0*T+t0)*dv), retAt(do, (h0*T+t0)*dv)
			if gr.v != nil {
				dvc := retAt(gr.v, (h0*T+t0)*dv)
				b.retGemm(false, true, Lc, Lc, dk, qc, T*dk, kc, T*dk, 0, A.ptr(), Lc*Lc, n)
				b.retDecayMask(A, 0, g, n, Lc, p0)
				b.retGemm(true, false, Lc, dv, Lc, A.ptr(), Lc*Lc, doc, T*dv, 0, dvc, T*dv, n)
				b.retScaleRows(r, X, r.k, g, h0, n, t0, Lc, dk, false)
				b.retGemm(false, false, Lc, dv, dk, X.ptr(), Lc*dk, gs, SE, 1, dvc, T*dv, n)
			}
			if gr.q != nil || gr.k != nil {
				b.retGemm(false, true, Lc, Lc, dv, doc, T*dv, vc, T*dv, 0, A.ptr(), Lc*Lc, n)
				b.retDecayMask(A, 0, g, n, Lc, p0)
				if gr.k != nil {
					dkc := retAt(gr.k, (h0*T+t0)*dk)
					b.retGemm(true, false, Lc, dk, Lc, A.ptr(), Lc*Lc, qc, T*dk, 0, dkc, T*dk, n)
					b.retScaleRows(r, X, r.v, g, h0, n, t0, Lc, dv, false)
					b.retGemm(false, true, Lc, dk, dv, X.ptr(), Lc*dv, gs, SE, 1, dkc, T*dk, n)
				}
				if gr.q != nil {
					dqc := retAt(gr.q, (h0*T+t0)*dk)
					b.retGemm(false, false, Lc, dk, Lc, A.ptr(), Lc*Lc, kc, T*dk, 0, dqc, T*dk, n)
					if p0 > 0 {
						b.retScaleRows(r, X, do, g, h0, n, t0, Lc, dv, true)
						b.retGemm(false, true, Lc, dk, dv, X.ptr(), Lc*dv, retAt(states, ci*n*SE), SE, 1, dqc, T*dk, n)
					}
				}
			}
			// Carry G to the state entering the chunk: at the start of a
			// sequence that state has no part in the result.
			if p0 == 0 {
				b.retZero(gs, n*SE)
				continue
			}
			b.retAdvance(r, X, g, h0, n, t0, Lc, r.q, do, true, gs, gs)
		}
	}
}

// retChunkStates sets states[ci] ([n,dk,dv] at ci*n*dk*dv) to the state
// entering chunk ci of the n heads from h0, for ci < nc: states[0] is S0
// (zero without one), then each chunk's update of retChunkwise written
// into the next slot.
func (b *Backend) retChunkStates(r *retCall, states, X *Tensor, g driver.DevicePtr, h0, n, L, nc int) {
	SE := r.stateElems
	if r.s0 != nil {
		b.retCopy(states.ptr(), retAt(r.s0, h0*SE), n*SE)
	} else {
		b.retZero(states.ptr(), n*SE)
	}
	for ci := 0; ci+1 < nc; ci++ {
		b.retAdvance(r, X, g, h0, n, ci*L, L, r.k, r.v, false, retAt(states, (ci+1)*n*SE), retAt(states, ci*n*SE))
	}
}

// retAdvance queues, for the chunk of L tokens from t0 of the n heads from
// h0 (P0 = offset + t0), dst = decay src + (diag(f) Y)^T Z with Y's rows
// [L,dk] and Z's [L,dv] of the chunk and f the chunk's write factors
// (reads false: the state update, Y = K, Z = V) or read factors (reads
// true: the carry of dL/dS, Y = Q, Z = dO); dst may be src. At P0 = 0,
// src has no part (not read).
func (b *Backend) retAdvance(r *retCall, X *Tensor, g driver.DevicePtr, h0, n, t0, L int, y, z *Tensor, reads bool, dst, src driver.DevicePtr) {
	T, dk, dv, SE := r.T, r.dk, r.dv, r.stateElems
	var beta float32
	if p0 := r.offset + t0; p0 > 0 {
		b.retStateDecay(r, dst, src, g, n, L, p0)
		beta = 1
	}
	b.retScaleRows(r, X, y, g, h0, n, t0, L, dk, reads)
	b.retGemm(true, false, dk, dv, L, X.ptr(), L*dk, retAt(z, (h0*T+t0)*dv), T*dv, beta, dst, SE, n)
}
