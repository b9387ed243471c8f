package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// The parallel and chunkwise forms, and both backward passes, do their
// heavy products with sgemm: each head is one unit of work whose products
// run on the goroutine that took it (or, when there are fewer heads than
// threads, are split across the workers; the GEMM's result does not depend
// on the split). The masks, decay factors and row normalisers are applied
// between the products in scalar loops, with s_p and the powers of gamma in
// float64 rounded to float32 where they multiply float32 data. Scratch
// memory comes from pools, so nothing is allocated per call once warm.

// retBlock is the number of rows of the parallel form's matrix computed at
// a time: a block of rows [n0, n1) needs the columns [0, n1) only, which
// skips most of the zero upper triangle while keeping the products large.
const retBlock = 64

// recurrentGradChunk is the chunk length RetentionGrad uses for the
// recurrent form. The recurrent and chunkwise forms compute the same
// function, so one backward pass serves both; walking back token by token
// would need every per-token state (T*dk*dv values per head), while chunks
// need only the states at chunk starts.
const recurrentGradChunk = 32

// retData holds the checked inputs of a retention kernel as host slices.
type retData struct {
	B, H, T, dk, dv int
	q, k, v, s0     []float32 // s0 is nil when absent
	gamma           []float32
	offset, chunk   int
}

// retentionInputs checks form and in (see api.RetentionArgs) and returns
// them as host slices. Sizes that do not fit panic with ErrShape; a decay
// outside (0,1), a negative offset or chunk length, and an offset that has
// no state to continue from panic with ErrOutOfRange.
func (b *Backend) retentionInputs(r *retData, op string, form api.RetentionForm, in api.RetentionArgs) {
	if form != api.RetentionParallel && form != api.RetentionChunkwise && form != api.RetentionRecurrent {
		api.Panicf(api.ErrUnsupported, "%s: retention form %d", op, form)
	}
	q, k, v := b.f32(in.Q, op), b.f32(in.K, op), b.f32(in.V, op)
	s0 := b.f32OrNil(in.S0, op)
	qs := seqRank(op, "Q", q, 4)
	vs := seqRank(op, "V", v, 4)
	*r = retData{B: qs[0], H: qs[1], T: qs[2], dk: qs[3], dv: vs[3], gamma: in.Gamma, offset: in.Offset, chunk: in.Chunk}
	wantShape(op, "K", k, r.B, r.H, r.T, r.dk)
	wantShape(op, "V", v, r.B, r.H, r.T, r.dv)
	r.q, r.k, r.v = q.f32, k.f32, v.f32
	if len(in.Gamma) != r.H {
		api.Panicf(api.ErrShape, "%s: %d decays for %d heads", op, len(in.Gamma), r.H)
	}
	for h, g := range in.Gamma {
		if !(g > 0 && g < 1) {
			api.Panicf(api.ErrOutOfRange, "%s: decay %g of head %d is outside (0,1)", op, g, h)
		}
	}
	if in.Offset < 0 {
		api.Panicf(api.ErrOutOfRange, "%s: negative offset %d", op, in.Offset)
	}
	if s0 != nil {
		if form == api.RetentionParallel {
			api.Panicf(api.ErrShape, "%s: the parallel form takes no initial state, got S0 %v", op, s0.shape)
		}
		wantShape(op, "S0", s0, r.B, r.H, r.dk, r.dv)
		r.s0 = s0.f32
	} else if in.Offset != 0 {
		api.Panicf(api.ErrOutOfRange, "%s: offset %d without a state S0 to continue from", op, in.Offset)
	}
	switch form {
	case api.RetentionChunkwise:
		if in.Chunk < 1 {
			api.Panicf(api.ErrOutOfRange, "%s: chunk length %d, want >= 1", op, in.Chunk)
		}
	case api.RetentionRecurrent:
		r.chunk = recurrentGradChunk
	}
}

// stateCheck panics unless a state tensor t (sT or dsT) is nil or, for the
// chunkwise and recurrent forms, [B,H,dk,dv].
func (r *retData) stateCheck(op, what string, form api.RetentionForm, t *Tensor) {
	if t == nil {
		return
	}
	if form == api.RetentionParallel {
		api.Panicf(api.ErrShape, "%s: the parallel form has no state, got %s %v", op, what, t.shape)
	}
	wantShape(op, what, t, r.B, r.H, r.dk, r.dv)
}

// retHead is one head's slice of the inputs: q, k [T,dk], v [T,dv], s0
// [dk,dv] (nil for none), with its decay and offset.
type retHead struct {
	q, k, v, s0          []float32
	T, dk, dv, offset    int
	gamma, logG, oneMinG float64
}

// head returns the view of head bh = b*H + h.
func (r *retData) head(bh int) retHead {
	g := float64(r.gamma[bh%r.H])
	h := retHead{
		q: r.q[bh*r.T*r.dk : (bh+1)*r.T*r.dk],
		k: r.k[bh*r.T*r.dk : (bh+1)*r.T*r.dk],
		v: r.v[bh*r.T*r.dv : (bh+1)*r.T*r.dv],
		T: r.T, dk: r.dk, dv: r.dv, offset: r.offset,
		gamma: g, logG: math.Log(g), oneMinG: 1 - g,
	}
	if r.s0 != nil {
		h.s0 = r.s0[bh*r.dk*r.dv : (bh+1)*r.dk*r.dv]
	}
	return h
}

// s returns s_p = sum_{j=0..p} gamma^j = (1 - gamma^(p+1)) / (1 - gamma),
// which is 0 for p = -1.
func (h *retHead) s(p int) float64 { return -math.Expm1(float64(p+1)*h.logG) / h.oneMinG }

// powers fills pw[i] = gamma^i.
func (h *retHead) powers(pw []float64) {
	for i := range pw {
		pw[i] = math.Exp(float64(i) * h.logG)
	}
}

// initState sets S [dk,dv] to the head's S0, or to zero.
func (h *retHead) initState(S []float32) {
	if h.s0 == nil {
		clear(S)
		return
	}
	copy(S, h.s0)
}

func (h *retHead) qRow(t int) []float32 { return h.q[t*h.dk : (t+1)*h.dk] }
func (h *retHead) kRow(t int) []float32 { return h.k[t*h.dk : (t+1)*h.dk] }
func (h *retHead) vRow(t int) []float32 { return h.v[t*h.dv : (t+1)*h.dv] }

// retScaleRows sets row i of dst to f[i] times row i of src, for len(f)
// rows of the given width, rounding each product to float32, and returns
// the rows of dst it set.
func retScaleRows(dst, src []float32, f []float64, width int) []float32 {
	dst = dst[:len(f)*width]
	for i, fi := range f {
		d, s := dst[i*width:(i+1)*width], src[i*width:(i+1)*width]
		for x, v := range s {
			d[x] = float32(fi * float64(v))
		}
	}
	return dst
}

// retCarver hands out consecutive pieces of a buffer.
type retCarver[T any] []T

// take returns the next n elements.
func (c *retCarver[T]) take(n int) []T {
	s := (*c)[:n:n]
	*c = (*c)[n:]
	return s
}

var (
	retScratch32 slicePool[float32]
	retScratch64 slicePool[float64]
)

// retWork is the scratch memory of one retention worker, carved out of two
// pooled buffers (the pieces a form does not use are empty), and the way
// it runs its matrix products.
type retWork struct {
	be    *Backend // splits each product over its workers; nil: run serially
	buf32 *[]float32
	buf64 *[]float64

	pw        []float64 // gamma^i
	r, wf, cf []float64 // one value per row of a block or chunk
	S, G      []float32 // [dk,dv]: the running state and dL/dS
	states    []float32 // the state entering each chunk (backward pass)
	A, dA     []float32 // blocks of the score matrix and of its gradient
	X         []float32 // rows of an operand scaled per token
}

// get takes scratch for the kernel described by r and form from the pools
// (put gives it back): the parallel and chunkwise forms, and grad, a
// backward pass's scratch (the recurrent form's backward pass works in
// chunks; its forward pass needs no scratch of this kind).
func (w *retWork) get(r *retData, form api.RetentionForm, grad bool) {
	var rows, nPow, nS, nG, nStates, nA, nDA, nX int
	switch {
	case form == api.RetentionParallel:
		rows = min(retBlock, r.T)
		nPow, nA = r.T+1, rows*r.T
		if grad {
			nDA = nA
		}
	case form == api.RetentionChunkwise || grad:
		rows = min(r.chunk, r.T)
		nPow, nS, nA, nX = rows+1, r.dk*r.dv, rows*rows, rows*max(r.dk, r.dv)
		if grad {
			nG, nStates, nDA = nS, ceilDiv(r.T, max(rows, 1))*nS, nA
		}
	}
	w.buf32 = retScratch32.get(nS + nG + nStates + nA + nDA + nX)
	w.buf64 = retScratch64.get(nPow + 3*rows)
	f32, f64 := retCarver[float32](*w.buf32), retCarver[float64](*w.buf64)
	w.S, w.G, w.states = f32.take(nS), f32.take(nG), f32.take(nStates)
	w.A, w.dA, w.X = f32.take(nA), f32.take(nDA), f32.take(nX)
	w.pw, w.r, w.wf, w.cf = f64.take(nPow), f64.take(rows), f64.take(rows), f64.take(rows)
}

// put returns the scratch to the pools.
func (w *retWork) put() {
	retScratch32.put(w.buf32)
	retScratch64.put(w.buf64)
}

// mul sets C = op(A) op(B) + beta * C with sgemm (see there), serially or
// split over w.be's workers.
func (w *retWork) mul(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if w.be != nil {
		sgemm(w.be, transA, transB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
		return
	}
	sgemm(serial, transA, transB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

// splitProducts returns the backend over whose workers a retention kernel
// of the given number of heads splits each matrix product (retWork.be):
// b when there are fewer heads than threads (the heads alone would leave
// threads idle), else nil, and each head runs on one goroutine.
func (b *Backend) splitProducts(heads int) *Backend {
	if heads < b.threads {
		return b
	}
	return nil
}

// Retention computes retention in the given form (see api.RetentionArgs):
// o [B,H,T,dv] and, for the chunkwise and recurrent forms when sT is not
// nil, the state after the last token. Heads are independent units of work.
// The state is float32; s_p and the decay factors are float64, rounded to
// float32 where they multiply float32 data.
func (b *Backend) Retention(form api.RetentionForm, o, sT api.Tensor, in api.RetentionArgs) {
	const op = "Retention"
	rt := retentionTasks.get()
	r := &rt.r
	b.retentionInputs(r, op, form, in)
	ot, st := b.f32(o, op), b.f32OrNil(sT, op)
	wantShape(op, "o", ot, r.B, r.H, r.T, r.dv)
	r.stateCheck(op, "sT", form, st)
	rt.form, rt.out, rt.sT = form, ot.f32, nil
	if st != nil {
		rt.sT = st.f32
	}
	if form == api.RetentionRecurrent {
		b.retentionRecurrent(rt)
	} else {
		rt.be = b.splitProducts(r.B * r.H)
		b.run(r.B*r.H, 1, rt)
	}
	retentionTasks.put(rt)
}

// retentionTask is Retention's work over heads bh = b*H + h in [lo, hi).
type retentionTask struct {
	r       retData
	form    api.RetentionForm
	be      *Backend  // see retWork.be
	out, sT []float32 // sT is nil when not wanted
}

var retentionTasks taskPool[retentionTask]

func (rt *retentionTask) run(lo, hi int) {
	r := &rt.r
	w := retWork{be: rt.be}
	w.get(r, rt.form, false)
	defer w.put()
	for bh := lo; bh < hi; bh++ {
		h := r.head(bh)
		out := rt.out[bh*r.T*r.dv : (bh+1)*r.T*r.dv]
		S := w.S
		switch rt.form {
		case api.RetentionParallel:
			h.parallel(out, &w)
			continue
		case api.RetentionChunkwise:
			h.powers(w.pw)
			h.initState(S)
			for t0 := 0; t0 < r.T; t0 += r.chunk {
				h.chunk(out, S, t0, min(r.chunk, r.T-t0), &w)
			}
		}
		if rt.sT != nil {
			copy(rt.sT[bh*r.dk*r.dv:], S)
		}
	}
}

// retColumns is the number of state columns in a unit of work of the
// recurrent form, a multiple of 8 (see retStepRow): a head's state is read
// and written once per token, so the heads of a decode step are cut into
// column blocks to spread that traffic over every worker.
const retColumns = 256

// retentionRecurrent runs the recurrent form of rt (see Retention) over
// units of retColumns columns of one head's state and output, which are
// independent: unit u is columns [c*retColumns, ...) of head u / blocks,
// c = u % blocks.
func (b *Backend) retentionRecurrent(rt *retentionTask) {
	r := &rt.r
	if r.T == 0 { // no token: the state passes through
		if rt.sT != nil && r.s0 != nil {
			copy(rt.sT, r.s0)
		} else if rt.sT != nil {
			clear(rt.sT)
		}
		return
	}
	blocks := ceilDiv(r.dv, retColumns)
	b.run(r.B*r.H*blocks, max(1, minGrain/max(1, r.T*r.dk*retColumns)), (*retRecurrentTask)(rt))
}

// retRecurrentTask is Retention's recurrent form over column units (see
// retentionRecurrent).
type retRecurrentTask retentionTask

func (rt *retRecurrentTask) run(lo, hi int) {
	r := &rt.r
	blocks := ceilDiv(r.dv, retColumns)
	var scratch *[]float32
	if rt.sT == nil {
		scratch = retScratch32.get(r.dk * retColumns)
		defer retScratch32.put(scratch)
	}
	for u := lo; u < hi; u++ {
		bh, j0 := u/blocks, u%blocks*retColumns
		h := r.head(bh)
		out := rt.out[bh*r.T*r.dv : (bh+1)*r.T*r.dv]
		if rt.sT != nil {
			h.recurrent(out, rt.sT[bh*r.dk*r.dv+j0:(bh+1)*r.dk*r.dv], r.dv, j0, min(r.dv, j0+retColumns))
		} else {
			h.recurrent(out, *scratch, retColumns, j0, min(r.dv, j0+retColumns))
		}
	}
}

// recurrent runs the recurrent form token by token on columns [j0, j1) of
// the state and of o [T,dv], advancing from the head's S0 (zero when it
// has none) into S, which holds row a of those columns at S[a*ld:] (S may
// be the same memory as the S0 columns):
//
//	S_p = S_{p-1} gamma sqrt(s_{p-1}/s_p) + k_p^T v_p / sqrt(s_p),  o_p = q_p S_p
//
// At p = 0 there is no previous state term.
func (h *retHead) recurrent(o, S []float32, ld, j0, j1 int) {
	w := j1 - j0
	for t := range h.T {
		p := h.offset + t
		sp := h.s(p)
		beta := 1 / math.Sqrt(sp)
		var alpha float32
		if p > 0 {
			alpha = float32(h.gamma * math.Sqrt(h.s(p-1)/sp))
		}
		kt, qt, vt := h.kRow(t), h.qRow(t), h.vRow(t)[j0:j1]
		ot := o[t*h.dv+j0 : t*h.dv+j1]
		clear(ot)
		for a := range h.dk {
			dst := S[a*ld : a*ld+w]
			var src []float32 // the state before the token: none at p = 0
			if t > 0 {
				src = dst
			} else if p > 0 { // continuing from S0 (Retention checked it is there)
				src = h.s0[a*h.dv+j0 : a*h.dv+j1]
			}
			retStepRow(alpha, float32(beta*float64(kt[a])), qt[a], src, vt, dst, ot)
		}
	}
}

// retStepGeneric is retStepRow in pure Go.
func retStepGeneric(alpha, ka, qa float32, src, v, dst, o []float32) {
	v, o = v[:len(dst)], o[:len(dst)]
	if src == nil {
		for i := range dst {
			dst[i] = ka * v[i]
			o[i] += qa * dst[i]
		}
		return
	}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = alpha*src[i] + ka*v[i]
		o[i] += qa * dst[i]
	}
}

// chunkFactors sets, for the chunk of L tokens starting at t0, w.r[i] =
// r_i = 1/sqrt(s_{P0+i}) (P0 = offset+t0), the weights w.wf[j] =
// gamma^(L-1-j) r_{L-1} with which token j writes into the state after the
// chunk, and, when the chunk continues a state, w.cf[i] = gamma^(i+1) c r_i
// with which token i reads the state before it, where c = sqrt(s_{P0-1}).
// It returns c, which is 0 at the start of a sequence (and then w.cf is not
// set). w.pw must hold gamma^i for i <= L.
func (h *retHead) chunkFactors(t0, L int, w *retWork) float64 {
	P0 := h.offset + t0
	pw, r := w.pw, w.r[:L]
	for i := range L {
		r[i] = 1 / math.Sqrt(h.s(P0+i))
	}
	for j := range L {
		w.wf[j] = pw[L-1-j] * r[L-1]
	}
	c := math.Sqrt(h.s(P0 - 1))
	if c != 0 {
		for i := range L {
			w.cf[i] = pw[i+1] * c * r[i]
		}
	}
	return c
}

// retChunkMask multiplies the L x L matrix a (row stride L) by the decay
// mask of a chunk, a[i,j] *= gamma^(i-j) r_i for j <= i, and zeroes it
// above the diagonal. w.pw and w.r must be set.
func retChunkMask(a []float32, L int, w *retWork) {
	for i := range L {
		row := a[i*L : (i+1)*L]
		ri := w.r[i]
		for j := range i + 1 {
			row[j] = float32(float64(row[j]) * w.pw[i-j] * ri)
		}
		clear(row[i+1:])
	}
}

// chunk computes the L tokens from t0 as one chunk, given S = S_{P0-1}
// (P0 = offset+t0), and advances S to the state after the chunk. With the
// factors of chunkFactors and Q, K, V the chunk's rows:
//
//	O  = ((Q K^T) * M) V + diag(cf) Q S      M[i,j] = gamma^(i-j) r_i, j <= i
//	S' = gamma^L c r_{L-1} S + (diag(wf) K)^T V
//
// each product with sgemm. When o is nil only the state is advanced. w.pw
// must hold gamma^i for i <= L.
func (h *retHead) chunk(o, S []float32, t0, L int, w *retWork) {
	dk, dv := h.dk, h.dv
	q, k, v := h.q[t0*dk:(t0+L)*dk], h.k[t0*dk:(t0+L)*dk], h.v[t0*dv:(t0+L)*dv]
	c := h.chunkFactors(t0, L, w)
	if o != nil {
		oc := o[t0*dv : (t0+L)*dv]
		a := w.A[:L*L]
		w.mul(false, true, L, L, dk, q, dk, k, dk, 0, a, L)
		retChunkMask(a, L, w)
		w.mul(false, false, L, dv, L, a, L, v, dv, 0, oc, dv)
		if c != 0 {
			qs := retScaleRows(w.X, q, w.cf[:L], dk)
			w.mul(false, false, L, dv, dk, qs, dk, S, dv, 1, oc, dv)
		}
	}
	var decay float32 // at the start of a sequence the old state has no part
	if c != 0 {
		decay = float32(w.pw[L] * c * w.r[L-1])
	}
	kw := retScaleRows(w.X, k, w.wf[:L], dk)
	w.mul(true, false, dk, dv, L, kw, dk, v, dv, decay, S, dv)
}

// parallel computes the parallel form in blocks of retBlock rows: for the
// rows [n0, n1), O[n0:n1] = P V[0:n1] with P the block's normalised scores
// (see parallelScores).
func (h *retHead) parallel(o []float32, w *retWork) {
	h.powers(w.pw)
	for n0 := 0; n0 < h.T; n0 += retBlock {
		n1 := min(n0+retBlock, h.T)
		p := h.parallelScores(w, n0, n1)
		w.mul(false, false, n1-n0, h.dv, n1, p, n1, h.v, h.dv, 0, o[n0*h.dv:], h.dv)
	}
}

// parallelScores sets w.A to the rows [n0, n1) of the parallel form's
// normalised matrix over the columns [0, n1) (row stride n1) and returns
// them:
//
//	A[n,m] = (q_n.k_m) gamma^(n-m) / sqrt(s_n)    m <= n (Q K^T by sgemm)
//	P[n,m] = A[n,m] / den_n,  den_n = clamp(sum_m |A[n,m]|, 1, 5e4)
//
// and zero above the diagonal. It sets w.r[n-n0] = 1/(sqrt(s_n) den_n), the
// factor that takes q_n.k_m gamma^(n-m) to P[n,m]. w.pw must hold gamma^i
// for i < n1.
func (h *retHead) parallelScores(w *retWork, n0, n1 int) []float32 {
	p := w.A[:(n1-n0)*n1]
	w.mul(false, true, n1-n0, n1, h.dk, h.q[n0*h.dk:], h.dk, h.k, h.dk, 0, p, n1)
	for n := n0; n < n1; n++ {
		row := p[(n-n0)*n1 : (n-n0+1)*n1]
		rn := 1 / math.Sqrt(h.s(n))
		var abs float64
		for m := range n + 1 {
			a := float32(float64(row[m]) * w.pw[n-m] * rn)
			row[m] = a
			abs += math.Abs(float64(a))
		}
		den := float32(min(max(abs, 1), 5e4))
		for m := range n + 1 {
			row[m] /= den
		}
		clear(row[n+1:])
		w.r[n-n0] = rn / float64(den)
	}
	return p
}

// retGradOut holds the gradient outputs of one head (nil when not wanted).
type retGradOut struct {
	q, k, v, s0 []float32
}

// RetentionGrad sets the gradients of Retention's inputs from do and, for
// the chunkwise and recurrent forms, dsT (nil for zero). The parallel form's
// row normaliser is a constant computed from the forward inputs (torchscale
// detaches it). The recurrent form is differentiated with the chunkwise
// backward pass (chunks of recurrentGradChunk tokens): both forms compute
// the same function. The products run on sgemm in float32.
func (b *Backend) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	const op = "RetentionGrad"
	gt := retentionGradTasks.get()
	r := &gt.r
	b.retentionInputs(r, op, form, in)
	dOut, dst := b.f32(do, op), b.f32OrNil(dsT, op)
	wantShape(op, "do", dOut, r.B, r.H, r.T, r.dv)
	r.stateCheck(op, "dsT", form, dst)
	if g.S0 != nil && in.S0 == nil {
		api.Panicf(api.ErrShape, "%s: gradient of S0 asked for without S0", op)
	}
	part := func(t api.Tensor, what string, shape ...int) []float32 {
		x := b.f32OrNil(t, op)
		if x == nil {
			return nil
		}
		wantShape(op, what, x, shape...)
		return x.f32
	}
	gt.form, gt.do = form, dOut.f32
	gt.q = part(g.Q, "gradient Q", r.B, r.H, r.T, r.dk)
	gt.k = part(g.K, "gradient K", r.B, r.H, r.T, r.dk)
	gt.v = part(g.V, "gradient V", r.B, r.H, r.T, r.dv)
	gt.s0 = part(g.S0, "gradient S0", r.B, r.H, r.dk, r.dv)
	if dst != nil {
		gt.dsT = dst.f32
	}
	gt.be = b.splitProducts(r.B * r.H)
	b.run(r.B*r.H, 1, gt)
	retentionGradTasks.put(gt)
}

// retentionGradTask is RetentionGrad's work over heads bh = b*H + h in
// [lo, hi). The gradient slices cover all heads; nil ones are not wanted.
type retentionGradTask struct {
	r           retData
	form        api.RetentionForm
	be          *Backend // see retWork.be
	do, dsT     []float32
	q, k, v, s0 []float32
}

var retentionGradTasks taskPool[retentionGradTask]

func (gt *retentionGradTask) run(lo, hi int) {
	r := &gt.r
	w := retWork{be: gt.be}
	w.get(r, gt.form, true)
	defer w.put()
	// of returns head bh's part of x, n values per head (nil when x is).
	of := func(x []float32, bh, n int) []float32 {
		if x == nil {
			return nil
		}
		return x[bh*n : (bh+1)*n]
	}
	qn, vn, sn := r.T*r.dk, r.T*r.dv, r.dk*r.dv
	for bh := lo; bh < hi; bh++ {
		h := r.head(bh)
		out := retGradOut{q: of(gt.q, bh, qn), k: of(gt.k, bh, qn), v: of(gt.v, bh, vn), s0: of(gt.s0, bh, sn)}
		if gt.form == api.RetentionParallel {
			h.parallelGrad(out, of(gt.do, bh, vn), &w)
			continue
		}
		h.chunkGrad(out, of(gt.do, bh, vn), of(gt.dsT, bh, sn), r.chunk, &w)
	}
}

// parallelGrad differentiates the parallel form with the normalisers den_n
// held constant, block of rows by block of rows (see parallel). With P the
// normalised scores and W[n,m] = gamma^(n-m) / (sqrt(s_n) den_n) for m <= n
// (else 0), each block [n0, n1) adds its part, by sgemm:
//
//	dV[0:n1] += P^T dO[n0:n1]
//	dS        = (dO[n0:n1] V[0:n1]^T) * W
//	dQ[n0:n1] = dS K[0:n1],   dK[0:n1] += dS^T Q[n0:n1]
func (h *retHead) parallelGrad(out retGradOut, do []float32, w *retWork) {
	dk, dv := h.dk, h.dv
	h.powers(w.pw)
	clear(out.k)
	clear(out.v)
	for n0 := 0; n0 < h.T; n0 += retBlock {
		n1 := min(n0+retBlock, h.T)
		rows := n1 - n0
		p := h.parallelScores(w, n0, n1)
		dob := do[n0*dv : n1*dv]
		if out.v != nil {
			w.mul(true, false, n1, dv, rows, p, n1, dob, dv, 1, out.v, dv)
		}
		if out.q == nil && out.k == nil {
			continue
		}
		ds := w.dA[:rows*n1]
		w.mul(false, true, rows, n1, dv, dob, dv, h.v, dv, 0, ds, n1)
		for n := n0; n < n1; n++ {
			row := ds[(n-n0)*n1 : (n-n0+1)*n1]
			f := w.r[n-n0]
			for m := range n + 1 {
				row[m] = float32(float64(row[m]) * w.pw[n-m] * f)
			}
			clear(row[n+1:])
		}
		if out.q != nil {
			w.mul(false, false, rows, dk, n1, ds, n1, h.k, dk, 0, out.q[n0*dk:], dk)
		}
		if out.k != nil {
			w.mul(true, false, n1, dk, rows, ds, n1, h.q[n0*dk:], dk, 1, out.k, dk)
		}
	}
}

// chunkGrad differentiates the chunkwise form (chunks of L tokens) from do
// and dsT (nil for zero). A forward pass stores the state entering each
// chunk; the backward pass walks the chunks from last to first carrying
// G = dL/dS for the state after the chunk. Per chunk, with the notation of
// chunk, Sp the state entering it and dO its rows of do, by sgemm:
//
//	dV = ((Q K^T) * M)^T dO + diag(wf) K G
//	dS = (dO V^T) * M
//	dK = dS^T Q + diag(wf) V G^T
//	dQ = dS K + diag(cf) dO Sp^T
//	G <- gamma^L c r_{L-1} G + (diag(cf) Q)^T dO
//
// and dS0 is the final G.
func (h *retHead) chunkGrad(out retGradOut, do, dsT []float32, L int, w *retWork) {
	dk, dv := h.dk, h.dv
	L = min(L, h.T)
	h.powers(w.pw[:L+1])
	nc := 0
	if h.T > 0 {
		nc = ceilDiv(h.T, L)
	}
	S := w.S
	h.initState(S)
	for ci := range nc {
		copy(w.states[ci*dk*dv:(ci+1)*dk*dv], S)
		h.chunk(nil, S, ci*L, min(L, h.T-ci*L), w)
	}
	G := w.G
	if dsT != nil {
		copy(G, dsT)
	} else {
		clear(G)
	}
	for ci := nc - 1; ci >= 0; ci-- {
		t0 := ci * L
		n := min(L, h.T-t0)
		c := h.chunkFactors(t0, n, w)
		q, k := h.q[t0*dk:(t0+n)*dk], h.k[t0*dk:(t0+n)*dk]
		v, doc := h.v[t0*dv:(t0+n)*dv], do[t0*dv:(t0+n)*dv]
		if out.v != nil {
			dvc := out.v[t0*dv : (t0+n)*dv]
			a := w.A[:n*n]
			w.mul(false, true, n, n, dk, q, dk, k, dk, 0, a, n)
			retChunkMask(a, n, w)
			w.mul(true, false, n, dv, n, a, n, doc, dv, 0, dvc, dv)
			kw := retScaleRows(w.X, k, w.wf[:n], dk)
			w.mul(false, false, n, dv, dk, kw, dk, G, dv, 1, dvc, dv)
		}
		if out.q != nil || out.k != nil {
			ds := w.dA[:n*n]
			w.mul(false, true, n, n, dv, doc, dv, v, dv, 0, ds, n)
			retChunkMask(ds, n, w)
			if out.k != nil {
				dkc := out.k[t0*dk : (t0+n)*dk]
				w.mul(true, false, n, dk, n, ds, n, q, dk, 0, dkc, dk)
				vw := retScaleRows(w.X, v, w.wf[:n], dv)
				w.mul(false, true, n, dk, dv, vw, dv, G, dv, 1, dkc, dk)
			}
			if out.q != nil {
				dqc := out.q[t0*dk : (t0+n)*dk]
				w.mul(false, false, n, dk, n, ds, n, k, dk, 0, dqc, dk)
				if c != 0 {
					dos := retScaleRows(w.X, doc, w.cf[:n], dv)
					w.mul(false, true, n, dk, dv, dos, dv, w.states[ci*dk*dv:(ci+1)*dk*dv], dv, 1, dqc, dk)
				}
			}
		}
		// Carry G to the state entering the chunk: at the start of a
		// sequence that state has no part in the result.
		if c == 0 {
			clear(G)
			continue
		}
		qs := retScaleRows(w.X, q, w.cf[:n], dk)
		w.mul(true, false, dk, dv, n, qs, dk, doc, dv, float32(w.pw[n]*c*w.r[n-1]), G, dv)
	}
	copy(out.s0, G)
}
