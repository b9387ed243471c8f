package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

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

// retDot32 returns sum_i a[i]*b[i] accumulated in float32.
func retDot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

// retDot64 returns sum_i a[i]*b[i] accumulated in float64.
func retDot64(a, b []float32) float64 {
	b = b[:len(a)]
	var s float64
	for i, x := range a {
		s += float64(x) * float64(b[i])
	}
	return s
}

// retAxpy32 adds alpha*x to dst.
func retAxpy32(dst []float32, alpha float32, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += alpha * x[i]
	}
}

// retAxpy64 adds alpha*x to the float64 accumulator dst.
func retAxpy64(dst []float64, alpha float64, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += alpha * float64(x[i])
	}
}

// retStore rounds a float64 accumulator into dst.
func retStore(dst []float32, src []float64) {
	for i, v := range src {
		dst[i] = float32(v)
	}
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
	b.run(r.B*r.H, 1, rt)
	retentionTasks.put(rt)
}

// retentionTask is Retention's work over heads bh = b*H + h in [lo, hi).
type retentionTask struct {
	r       retData
	form    api.RetentionForm
	out, sT []float32 // sT is nil when not wanted
}

var (
	retentionTasks taskPool[retentionTask]
	retScratch32   slicePool[float32]
	retScratch64   slicePool[float64]
)

func (rt *retentionTask) run(lo, hi int) {
	r := &rt.r
	// Scratch: the powers of gamma and the row scales (float64), one row of
	// the parallel form's matrix and the running state (float32).
	var n64, n32 int
	switch rt.form {
	case api.RetentionParallel:
		n64, n32 = r.T+1, r.T
	case api.RetentionChunkwise:
		L := min(r.chunk, r.T)
		n64, n32 = 2*L+1, r.dk*r.dv
	case api.RetentionRecurrent:
		n32 = r.dk * r.dv
	}
	buf64, buf32 := retScratch64.get(n64), retScratch32.get(n32)
	defer func() {
		retScratch64.put(buf64)
		retScratch32.put(buf32)
	}()
	for bh := lo; bh < hi; bh++ {
		h := r.head(bh)
		out := rt.out[bh*r.T*r.dv : (bh+1)*r.T*r.dv]
		var S []float32
		switch rt.form {
		case api.RetentionParallel:
			pw := (*buf64)[:r.T+1]
			h.powers(pw)
			h.parallel(out, (*buf32)[:r.T], pw)
			continue
		case api.RetentionChunkwise:
			L := min(r.chunk, r.T)
			pw, rs := (*buf64)[:L+1], (*buf64)[L+1:2*L+1]
			S = *buf32
			h.powers(pw)
			h.initState(S)
			for t0 := 0; t0 < r.T; t0 += r.chunk {
				h.chunk(out, S, t0, min(r.chunk, r.T-t0), pw, rs)
			}
		case api.RetentionRecurrent:
			S = *buf32
			h.initState(S)
			h.recurrent(out, S)
		}
		if rt.sT != nil {
			copy(rt.sT[bh*r.dk*r.dv:], S)
		}
	}
}

// recurrent runs the recurrent form token by token, advancing S [dk,dv]
// from S_{offset-1} and writing o [T,dv]:
//
//	S_p = S_{p-1} gamma sqrt(s_{p-1}/s_p) + k_p^T v_p / sqrt(s_p),  o_p = q_p S_p
//
// At p = 0 there is no previous state term.
func (h *retHead) recurrent(o, S []float32) {
	dv := h.dv
	for t := range h.T {
		p := h.offset + t
		sp := h.s(p)
		beta := 1 / math.Sqrt(sp)
		var alpha float32
		if p > 0 {
			alpha = float32(h.gamma * math.Sqrt(h.s(p-1)/sp))
		}
		kt, vt := h.kRow(t), h.vRow(t)
		for a := range h.dk {
			row := S[a*dv : (a+1)*dv]
			ka := float32(beta * float64(kt[a]))
			if p > 0 {
				for j := range row {
					row[j] = alpha*row[j] + ka*vt[j]
				}
			} else {
				for j := range row {
					row[j] = ka * vt[j]
				}
			}
		}
		ot := o[t*dv : (t+1)*dv]
		clear(ot)
		for a, qa := range h.qRow(t) {
			retAxpy32(ot, qa, S[a*dv:(a+1)*dv])
		}
	}
}

// chunkFactors returns, for the chunk of L tokens starting at t0, the
// square root of s at the position before the chunk (0 at the start of a
// sequence) and r_i = 1/sqrt(s_{P0+i}) into r[:L], where P0 = offset+t0.
func (h *retHead) chunkFactors(t0, L int, r []float64) float64 {
	P0 := h.offset + t0
	for i := range L {
		r[i] = 1 / math.Sqrt(h.s(P0+i))
	}
	return math.Sqrt(h.s(P0 - 1))
}

// chunk computes the L tokens from t0 as one chunk, given S = S_{P0-1}
// (P0 = offset+t0), and advances S to the state after the chunk. With
// pw[i] = gamma^i, r_i = 1/sqrt(s_{P0+i}) and c = sqrt(s_{P0-1}):
//
//	o_i = sum_{j<=i} (q_i.k_j) gamma^(i-j) r_i v_j + gamma^(i+1) c r_i q_i S
//	S'  = gamma^L c r_{L-1} S + sum_j gamma^(L-1-j) r_{L-1} k_j^T v_j
//
// When o is nil only the state is advanced. r is scratch of at least L
// values.
func (h *retHead) chunk(o, S []float32, t0, L int, pw, r []float64) {
	dv := h.dv
	r = r[:L]
	c := h.chunkFactors(t0, L, r)
	if o != nil {
		for i := range L {
			qi := h.qRow(t0 + i)
			oi := o[(t0+i)*dv : (t0+i+1)*dv]
			clear(oi)
			for j := 0; j <= i; j++ {
				w := float64(retDot32(qi, h.kRow(t0+j))) * pw[i-j] * r[i]
				retAxpy32(oi, float32(w), h.vRow(t0+j))
			}
			if c == 0 {
				continue
			}
			cross := pw[i+1] * c * r[i]
			for a, qa := range qi {
				retAxpy32(oi, float32(cross*float64(qa)), S[a*dv:(a+1)*dv])
			}
		}
	}
	rL := r[L-1]
	decay := float32(pw[L] * c * rL)
	for a := range h.dk {
		row := S[a*dv : (a+1)*dv]
		if c == 0 {
			clear(row)
		} else {
			for j := range row {
				row[j] *= decay
			}
		}
		for j := range L {
			w := pw[L-1-j] * rL * float64(h.kRow(t0 + j)[a])
			retAxpy32(row, float32(w), h.vRow(t0+j))
		}
	}
}

// retDen is torchscale's per-row normaliser of the parallel form,
// clamp(sum_m |A[n,m]|, 1, 5e4).
func retDen(row []float32) float32 {
	var abs float64
	for _, v := range row {
		abs += math.Abs(float64(v))
	}
	return float32(min(max(abs, 1), 5e4))
}

// parallelRow sets row[:n+1] to A[n,m] = (q_n.k_m) gamma^(n-m) / sqrt(s_n)
// for m <= n (the parallel form starts at position 0) and returns the row's
// normaliser.
func (h *retHead) parallelRow(row []float32, n int, pw []float64) float32 {
	rn := 1 / math.Sqrt(h.s(n))
	qn := h.qRow(n)
	for m := 0; m <= n; m++ {
		row[m] = float32(float64(retDot32(qn, h.kRow(m))) * pw[n-m] * rn)
	}
	return retDen(row[:n+1])
}

// parallel computes the parallel form row by row: O[n] = sum_m A[n,m]/den_n
// v_m, with row scratch of T values and pw[i] = gamma^i for i <= T.
func (h *retHead) parallel(o, row []float32, pw []float64) {
	for n := range h.T {
		den := h.parallelRow(row, n, pw)
		on := o[n*h.dv : (n+1)*h.dv]
		clear(on)
		for m := 0; m <= n; m++ {
			retAxpy32(on, row[m]/den, h.vRow(m))
		}
	}
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
// the same function. Gradients are accumulated in float64.
func (b *Backend) RetentionGrad(form api.RetentionForm, g api.RetentionGrads, in api.RetentionArgs, do, dsT api.Tensor) {
	const op = "RetentionGrad"
	var r retData
	b.retentionInputs(&r, op, form, in)
	dOut, dst := b.f32(do, op), b.f32OrNil(dsT, op)
	wantShape(op, "do", dOut, r.B, r.H, r.T, r.dv)
	r.stateCheck(op, "dsT", form, dst)
	if g.S0 != nil && in.S0 == nil {
		api.Panicf(api.ErrShape, "%s: gradient of S0 asked for without S0", op)
	}
	gq, gk := b.f32OrNil(g.Q, op), b.f32OrNil(g.K, op)
	gv, gs := b.f32OrNil(g.V, op), b.f32OrNil(g.S0, op)
	part := func(t *Tensor, what string, shape ...int) func(bh int) []float32 {
		if t == nil {
			return func(int) []float32 { return nil }
		}
		wantShape(op, "gradient "+what, t, shape...)
		n := shape[2] * shape[3]
		return func(bh int) []float32 { return t.f32[bh*n : (bh+1)*n] }
	}
	qOf := part(gq, "Q", r.B, r.H, r.T, r.dk)
	kOf := part(gk, "K", r.B, r.H, r.T, r.dk)
	vOf := part(gv, "V", r.B, r.H, r.T, r.dv)
	sOf := part(gs, "S0", r.B, r.H, r.dk, r.dv)
	b.parallelGrain(r.B*r.H, 1, func(lo, hi int) {
		var w *retGradWork
		if form == api.RetentionParallel {
			w = newRetGradWork(r.T, r.dk, r.dv, 0)
		} else {
			w = newRetGradWork(min(r.chunk, r.T), r.dk, r.dv, (r.T+r.chunk-1)/r.chunk)
		}
		for bh := lo; bh < hi; bh++ {
			h := r.head(bh)
			out := retGradOut{q: qOf(bh), k: kOf(bh), v: vOf(bh), s0: sOf(bh)}
			dob := dOut.f32[bh*r.T*r.dv : (bh+1)*r.T*r.dv]
			if form == api.RetentionParallel {
				h.parallelGrad(out, dob, w)
				continue
			}
			var dsTb []float32
			if dst != nil {
				dsTb = dst.f32[bh*r.dk*r.dv : (bh+1)*r.dk*r.dv]
			}
			h.chunkGrad(out, dob, dsTb, r.chunk, w)
		}
	})
}

// retGradWork is the scratch memory of one RetentionGrad worker.
type retGradWork struct {
	pw         []float64 // gamma^i
	r          []float64 // 1/sqrt(s) per token of a chunk
	row        []float32 // one row of A (parallel form)
	dq, dk, dv []float64 // gradient accumulators, [rows][dk] or [rows][dv]
	S          []float32 // chunkwise: the running state, [dk][dv]
	states     []float32 // chunkwise: the state entering each chunk
	G          []float64 // chunkwise: dL/dS after the current chunk, [dk][dv]
}

// newRetGradWork allocates scratch for a head processed in blocks of L rows
// (L = T for the parallel form) with nc chunk states.
func newRetGradWork(L, dk, dv, nc int) *retGradWork {
	return &retGradWork{
		pw: make([]float64, L+1), r: make([]float64, L), row: make([]float32, L),
		dq: make([]float64, max(L, 1)*dk), dk: make([]float64, L*dk), dv: make([]float64, L*dv),
		S: make([]float32, dk*dv), states: make([]float32, nc*dk*dv), G: make([]float64, dk*dv),
	}
}

// parallelGrad differentiates the parallel form with the normalisers den_n
// held constant. With P[n,m] = A[n,m]/den_n and dP[n,m] = do_n.v_m:
//
//	dv_m = sum_n P[n,m] do_n
//	dq_n = sum_m dP[n,m] D[n,m]/den_n k_m,  dk_m = sum_n dP[n,m] D[n,m]/den_n q_n
func (h *retHead) parallelGrad(out retGradOut, do []float32, w *retGradWork) {
	dk, dv := h.dk, h.dv
	pw := w.pw[:h.T+1]
	h.powers(pw)
	clear(w.dk)
	clear(w.dv)
	dqn := w.dq[:dk]
	for n := range h.T {
		den := h.parallelRow(w.row, n, pw)
		rn := 1 / math.Sqrt(h.s(n))
		qn, don := h.qRow(n), do[n*dv:(n+1)*dv]
		clear(dqn)
		for m := 0; m <= n; m++ {
			if out.v != nil {
				retAxpy64(w.dv[m*dv:(m+1)*dv], float64(w.row[m]/den), don)
			}
			dS := retDot64(don, h.vRow(m)) * pw[n-m] * rn / float64(den)
			retAxpy64(dqn, dS, h.kRow(m))
			retAxpy64(w.dk[m*dk:(m+1)*dk], dS, qn)
		}
		if out.q != nil {
			retStore(out.q[n*dk:(n+1)*dk], dqn)
		}
	}
	if out.k != nil {
		retStore(out.k, w.dk[:h.T*dk])
	}
	if out.v != nil {
		retStore(out.v, w.dv[:h.T*dv])
	}
}

// chunkGrad differentiates the chunkwise form (chunks of L tokens) from do
// and dsT (nil for zero). A forward pass stores the state entering each
// chunk; the backward pass walks the chunks from last to first carrying
// G = dL/dS for the state after the chunk. Per chunk (see chunk for the
// notation, cross_i = gamma^(i+1) c r_i, decay = gamma^L c r_{L-1}, w_j =
// gamma^(L-1-j) r_{L-1}):
//
//	dv_j = sum_{i>=j} (q_i.k_j) gamma^(i-j) r_i do_i + w_j k_j G
//	dk_j = sum_{i>=j} (do_i.v_j) gamma^(i-j) r_i q_i + w_j G v_j^T
//	dq_i = sum_{j<=i} (do_i.v_j) gamma^(i-j) r_i k_j + cross_i S do_i^T
//	G   <- decay G + sum_i cross_i q_i^T do_i
//
// and dS0 is the final G.
func (h *retHead) chunkGrad(out retGradOut, do, dsT []float32, L int, w *retGradWork) {
	dk, dv := h.dk, h.dv
	L = min(L, h.T)
	pw := w.pw[:L+1]
	h.powers(pw)
	nc := 0
	if h.T > 0 {
		nc = (h.T + L - 1) / L
	}
	S := w.S
	h.initState(S)
	for c := range nc {
		copy(w.states[c*dk*dv:(c+1)*dk*dv], S)
		h.chunk(nil, S, c*L, min(L, h.T-c*L), pw, w.r)
	}
	G := w.G
	if dsT != nil {
		for i, v := range dsT {
			G[i] = float64(v)
		}
	} else {
		clear(G)
	}
	for ci := nc - 1; ci >= 0; ci-- {
		t0 := ci * L
		n := min(L, h.T-t0)
		r := w.r[:n]
		c := h.chunkFactors(t0, n, r)
		Sprev := w.states[ci*dk*dv : (ci+1)*dk*dv]
		dq, dkA, dvA := w.dq[:n*dk], w.dk[:n*dk], w.dv[:n*dv]
		clear(dq)
		clear(dkA)
		clear(dvA)
		for i := range n {
			qi, doi := h.qRow(t0+i), do[(t0+i)*dv:(t0+i+1)*dv]
			for j := 0; j <= i; j++ {
				f := pw[i-j] * r[i]
				kj := h.kRow(t0 + j)
				if out.v != nil {
					retAxpy64(dvA[j*dv:(j+1)*dv], float64(retDot32(qi, kj))*f, doi)
				}
				da := retDot64(doi, h.vRow(t0+j)) * f
				retAxpy64(dkA[j*dk:(j+1)*dk], da, qi)
				retAxpy64(dq[i*dk:(i+1)*dk], da, kj)
			}
		}
		// Through the chunk's final state.
		rL := r[n-1]
		for j := range n {
			wj := pw[n-1-j] * rL
			kj, vj := h.kRow(t0+j), h.vRow(t0+j)
			dvj, dkj := dvA[j*dv:(j+1)*dv], dkA[j*dk:(j+1)*dk]
			for a := range dk {
				Ga := G[a*dv : (a+1)*dv]
				var gv float64
				for x, v := range vj {
					gv += Ga[x] * float64(v)
					dvj[x] += wj * float64(kj[a]) * Ga[x]
				}
				dkj[a] += wj * gv
			}
		}
		// Through the carried-in state, then carry G to the previous chunk.
		if c == 0 {
			clear(G)
		} else {
			decay := pw[n] * c * rL
			for i := range G {
				G[i] *= decay
			}
			for i := range n {
				cross := pw[i+1] * c * r[i]
				qi, doi := h.qRow(t0+i), do[(t0+i)*dv:(t0+i+1)*dv]
				dqi := dq[i*dk : (i+1)*dk]
				for a := range dk {
					dqi[a] += cross * retDot64(Sprev[a*dv:(a+1)*dv], doi)
					retAxpy64(G[a*dv:(a+1)*dv], cross*float64(qi[a]), doi)
				}
			}
		}
		if out.q != nil {
			retStore(out.q[t0*dk:(t0+n)*dk], dq)
		}
		if out.k != nil {
			retStore(out.k[t0*dk:(t0+n)*dk], dkA)
		}
		if out.v != nil {
			retStore(out.v[t0*dv:(t0+n)*dv], dvA)
		}
	}
	if out.s0 != nil {
		retStore(out.s0, G)
	}
}
