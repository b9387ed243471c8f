package nn

import (
	"math"

	"github.com/densessm/densessm/api"
)

// The references of the fused model-family kernels (api.ConvKernels,
// api.ScanKernels, api.RotaryKernels, api.RetentionKernels): each computes
// the function its api doc comment defines from tape ops over api.Kernels
// alone (MatMul, Binary with broadcasting, Unary, Affine, SumTo, Slice and
// SetSlice, Permute, Reshape, Copy), so its gradients come from the tape.
// The tape ops of ops_sequence.go run them when the tape's backend lacks
// the fused kernel (their arguments have been checked there) and join
// their outputs into one op with asOneOp, so that the gradients reach the
// inputs as a fused gradient kernel's would. Constants (decay masks and
// factors, cosine and sine tables) are computed on the host in float64 and
// uploaded as float32. They are written for correctness, not speed: a
// backend runs every model with them before it has fused kernels. They
// pass the compliance suite of package backendtest and agree with the CPU
// backend's fused kernels to float32 rounding (fused_test.go).

// refRecurrentChunk is the number of tokens the recurrent form's reference
// computes at a time (see retentionChunked).
const refRecurrentChunk = 64

// hostConst returns a Var that needs no gradient holding data, uploaded to
// the tape's backend.
func (t *Tape) hostConst(data []float32, shape ...int) *Var {
	return NewVar(api.FromFloat32s(t.b, data, shape...), false)
}

// zeros returns a Var that needs no gradient holding zeros.
func (t *Tape) zeros(shape ...int) *Var { return NewVar(t.alloc(shape...), false) }

// copyOf returns a copy of x that passes its gradient through.
func (t *Tape) copyOf(x *Var) *Var { return t.Affine(x, 1, 0) }

// concat joins parts along axis; one part is returned as it is.
func (t *Tape) concat(axis int, parts []*Var) *Var {
	if len(parts) == 1 {
		return parts[0]
	}
	return t.Concat(axis, parts...)
}

// asOneOp returns outs (nil entries stay nil) as the outputs of one op on
// ins, as a fused kernel's are: views of the same values whose gradients
// pass to outs unchanged, and which, once a gradient reaches any of them,
// give every input that needs a gradient one, zeros where outs do not
// depend on it (a fused gradient kernel sets all its outputs). Without it
// an input that only an unused output depends on would get no gradient at
// all.
func (t *Tape) asOneOp(ins []*Var, outs ...*Var) []*Var {
	var values []api.Tensor
	var inner []*Var
	for _, o := range outs {
		if o != nil {
			values = append(values, t.b.Reshape(o.value, o.Shape()...))
			inner = append(inner, o)
		}
	}
	joined := t.opN(values, inner, func(dys []api.Tensor) {
		for _, v := range ins {
			if v != nil && v.requiresGrad && v.grad == nil {
				v.grad = t.b.Alloc(api.F32, v.Shape()...)
				v.gradZero = true // the contributions to come overwrite it
			}
		}
		for i, o := range inner {
			if dys[i] == nil {
				continue
			}
			if s := t.sink(o); s != nil {
				t.b.Copy(s.dst(), dys[i])
				s.flush()
			}
		}
	})
	res := make([]*Var, len(outs))
	j := 0
	for i, o := range outs {
		if o != nil {
			res[i] = joined[j]
			j++
		}
	}
	return res
}

// causalConv1dRef is the reference of Tape.CausalConv1d (shapes checked):
// with xx = prev ++ x along time (zeros for a nil prev) and w^T [K,C],
//
//	y = bias + sum_k xx[:, k:k+T, :] * w^T[k]
func (t *Tape) causalConv1dRef(x, w, bias, prev *Var) *Var {
	xs := x.Shape()
	B, T, C, K := xs[0], xs[1], xs[2], w.Shape()[1]
	xx := x
	if K > 1 {
		p := prev
		if p == nil {
			p = t.zeros(B, K-1, C)
		}
		xx = t.Concat(1, p, x)
	}
	wt := t.Permute(w, 1, 0) // [K,C]
	var y *Var
	for k := range K {
		term := t.Mul(t.Slice(xx, 1, k, T), t.Slice(wt, 0, k, 1)) // [B,T,C] * [1,C]
		if y == nil {
			y = term
		} else {
			y = t.Add(y, term)
		}
	}
	if bias != nil {
		y = t.Add(y, bias)
	}
	return y
}

// selectiveScanRef is the reference of Tape.SelectiveScan (shapes checked).
// The decays exp(Delta A) [B,T,E,N] and inputs Delta X Bm [B,T,E,N] are
// computed for all tokens at once, the recurrence token by token on
// [B,1,E,N] slices, and y from the carried states by one batched product
// with Cm.
func (t *Tape) selectiveScanRef(in ScanVars, withState, withStates bool) (y, hT, hs *Var) {
	xs := in.X.Shape()
	B, T, E, N := xs[0], xs[1], xs[2], in.A.Shape()[1]
	if T == 0 { // empty outputs, still differentiable in the inputs
		y = t.Slice(in.X, 1, 0, 0)
		if withState {
			if in.H0 != nil {
				hT = t.copyOf(in.H0)
			} else {
				hT = t.zeros(B, E, N)
			}
		}
		if withStates {
			hs = t.Mul(t.Reshape(in.Delta, B, 0, E, 1), in.A)
		}
		return y, hT, hs
	}
	// The decays and inputs of every token: [B,T,E,N].
	decay := t.Unary(api.OpExp, t.Mul(t.Reshape(in.Delta, B, T, E, 1), in.A))
	input := t.Mul(t.Reshape(t.Mul(in.Delta, in.X), B, T, E, 1), t.Reshape(in.Bm, B, T, 1, N))
	var h *Var // h'_{t-1} [B,1,E,N]; nil for zeros
	if in.H0 != nil {
		h = t.Reshape(in.H0, B, 1, E, N)
	}
	carried := make([]*Var, 0, T)
	var before []*Var
	for i := range T {
		ht := t.Slice(input, 1, i, 1)
		if h != nil {
			ht = t.Add(t.Mul(t.Slice(decay, 1, i, 1), h), ht)
		}
		if withStates {
			before = append(before, ht)
		}
		if in.Inject != nil {
			ht = t.Add(ht, t.Slice(in.Inject, 1, i, 1))
		}
		carried = append(carried, ht)
		h = ht
	}
	y = t.Reshape(t.MatMul(t.concat(1, carried), t.Reshape(in.Cm, B, T, N, 1), false, false), B, T, E)
	if in.D != nil {
		y = t.Add(y, t.Mul(in.X, in.D))
	}
	if withState {
		hT = t.Reshape(h, B, E, N)
	}
	if withStates {
		hs = t.concat(1, before)
	}
	return y, hT, hs
}

// rotaryRef is the reference of Tape.Rotary (shapes checked), and of the
// inverse rotation: with x's pairs swapped, sw = (b, a), and tables of the
// angles φ = float32(offset+t) theta[i] (negated when inverse),
//
//	y = x * (cos φ, cos φ) + sw * (-sin φ, sin φ)
func (t *Tape) rotaryRef(x *Var, theta []float32, offset int, inverse bool) *Var {
	if offset < 0 {
		api.Panicf(api.ErrOutOfRange, "nn.Rotary: negative offset %d", offset)
	}
	xs := x.Shape()
	r := len(xs)
	T, d := xs[r-2], xs[r-1]
	cos, sin := make([]float32, T*d), make([]float32, T*d)
	for p := range T {
		pos := float32(offset + p)
		for i, th := range theta {
			s, c := math.Sincos(float64(pos * th))
			if inverse {
				s = -s
			}
			cos[p*d+2*i], cos[p*d+2*i+1] = float32(c), float32(c)
			sin[p*d+2*i], sin[p*d+2*i+1] = float32(-s), float32(s)
		}
	}
	pairs := t.Reshape(x, append(xs[:r-1].Clone(), d/2, 2)...)
	sw := t.Reshape(t.Concat(r, t.Slice(pairs, r, 1, 1), t.Slice(pairs, r, 0, 1)), xs...)
	return t.Add(t.Mul(x, t.hostConst(cos, T, d)), t.Mul(sw, t.hostConst(sin, T, d)))
}

// retentionScalars checks the scalars of a retention (the decays, the
// offset and its state, the chunk length) as the fused kernels do.
func retentionScalars(form api.RetentionForm, in RetentionVars) {
	for h, g := range in.Gamma {
		if !(g > 0 && g < 1) {
			api.Panicf(api.ErrOutOfRange, "nn.Retention: decay %g of head %d is outside (0,1)", g, h)
		}
	}
	if in.Offset < 0 {
		api.Panicf(api.ErrOutOfRange, "nn.Retention: negative offset %d", in.Offset)
	}
	if in.Offset > 0 && in.S0 == nil {
		api.Panicf(api.ErrOutOfRange, "nn.Retention: offset %d without a state S0 to continue from", in.Offset)
	}
	if form == api.RetentionChunkwise && in.Chunk < 1 {
		api.Panicf(api.ErrOutOfRange, "nn.Retention: chunk length %d, want >= 1", in.Chunk)
	}
}

// retentionRef is the reference of Tape.Retention (shapes and the form
// checked): the parallel form as api.RetentionArgs defines it, and the
// chunkwise and recurrent forms by retentionChunked, with the chunk length
// of the form (refRecurrentChunk for the recurrent form, which computes
// the same function up to rounding).
func (t *Tape) retentionRef(form api.RetentionForm, in RetentionVars, withState bool) (o, sT *Var) {
	retentionScalars(form, in)
	if form == api.RetentionParallel {
		return t.retentionParallelRef(in), nil
	}
	chunk := in.Chunk
	if form == api.RetentionRecurrent {
		chunk = refRecurrentChunk
	}
	return t.retentionChunked(in, chunk, withState)
}

// retentionFactors are the decay factors of a chunk of L tokens at
// absolute positions P0..P0+L-1, per head h, with r_i = 1/sqrt(s_{P0+i}),
// s_p = sum_{j<=p} gamma^j and c = sqrt(s_{P0-1}) (0 at P0 = 0):
//
//	mask  [H,L,L]  M[i,j] = gamma^(i-j) r_i for j <= i, else 0
//	read  [H,L,1]  gamma^(i+1) c r_i: token i's weight of the state before
//	write [H,L,1]  gamma^(L-1-j) r_{L-1}: token j's weight in the state after
//	decay [H,1,1]  gamma^L c r_{L-1}: the old state's weight in the new one
//
// At P0 = 0, c = 0: the state before has no part.
type retentionFactors struct {
	mask, read, write, decay []float32
}

// newRetentionFactors computes the factors in float64 (s_p as
// -expm1((p+1) ln gamma) / (1-gamma)) and rounds them to float32.
func newRetentionFactors(gamma []float32, P0, L int) retentionFactors {
	H := len(gamma)
	f := retentionFactors{
		mask: make([]float32, H*L*L), read: make([]float32, H*L), write: make([]float32, H*L),
		decay: make([]float32, H),
	}
	for h, g32 := range gamma {
		g := float64(g32)
		lg := math.Log(g)
		s := func(p int) float64 { return -math.Expm1(float64(p+1)*lg) / (1 - g) }
		pow := func(n int) float64 { return math.Exp(float64(n) * lg) }
		c := math.Sqrt(s(P0 - 1))
		r := make([]float64, L)
		for i := range L {
			r[i] = 1 / math.Sqrt(s(P0+i))
		}
		for i := range L {
			for j := range i + 1 {
				f.mask[(h*L+i)*L+j] = float32(pow(i-j) * r[i])
			}
			f.read[h*L+i] = float32(pow(i+1) * c * r[i])
			f.write[h*L+i] = float32(pow(L-1-i) * r[L-1])
		}
		if L > 0 {
			f.decay[h] = float32(pow(L) * c * r[L-1])
		}
	}
	return f
}

// retentionChunked computes the chunkwise form with chunks of chunk tokens
// (api.RetentionArgs): per chunk, with Q, K, V its rows, S the state
// before it and the factors of retentionFactors,
//
//	O  = ((Q K^T) * mask) V + (Q * read) S
//	S' = (K * write)^T V + S * decay
//
// which is the recurrent form's S_p and o_p summed over the chunk, exactly
// (S_p sqrt(s_p) = gamma S_{p-1} sqrt(s_{p-1}) + k_p^T v_p). At offset 0
// S0 has no part (its factor is 0) and is not read; with no token, sT is
// S0 (zeros without one).
func (t *Tape) retentionChunked(in RetentionVars, chunk int, withState bool) (o, sT *Var) {
	qs, vs := in.Q.Shape(), in.V.Shape()
	B, H, T, dk, dv := qs[0], qs[1], qs[2], qs[3], vs[3]
	if T == 0 {
		o = t.Slice(in.V, 2, 0, 0)
		if withState {
			if in.S0 != nil {
				sT = t.copyOf(in.S0)
			} else {
				sT = t.zeros(B, H, dk, dv)
			}
		}
		return o, sT
	}
	var S *Var // the state before the chunk; nil where it has no part
	if in.Offset > 0 {
		S = in.S0
	}
	var outs []*Var
	for t0 := 0; t0 < T; t0 += chunk {
		L := min(chunk, T-t0)
		f := newRetentionFactors(in.Gamma, in.Offset+t0, L)
		q, k, v := in.Q, in.K, in.V
		if L < T {
			q, k, v = t.Slice(q, 2, t0, L), t.Slice(k, 2, t0, L), t.Slice(v, 2, t0, L)
		}
		a := t.Mul(t.MatMul(q, k, false, true), t.hostConst(f.mask, H, L, L)) // [B,H,L,L]
		oc := t.MatMul(a, v, false, false)                                    // [B,H,L,dv]
		if S != nil {
			oc = t.Add(oc, t.MatMul(t.Mul(q, t.hostConst(f.read, H, L, 1)), S, false, false))
		}
		outs = append(outs, oc)
		if t0+L < T || withState {
			next := t.MatMul(t.Mul(k, t.hostConst(f.write, H, L, 1)), v, true, false) // [B,H,dk,dv]
			if S != nil {
				next = t.Add(next, t.Mul(S, t.hostConst(f.decay, H, 1, 1)))
			}
			S = next
		}
	}
	o = t.concat(2, outs)
	if withState {
		sT = S
	}
	return o, sT
}

// retentionParallelRef is the parallel form (api.RetentionArgs):
//
//	A = (Q K^T) * D,  D[n,m] = gamma^(n-m) / sqrt(s_n) for m <= n, else 0
//	O = (A / den) V,  den_n = clamp(sum_m |A[n,m]|, 1, 5e4)
//
// with den computed from A's value outside the tape (the row sums by
// SumTo, the clamp on the host), so that no gradient passes through it. D
// is the mask of retentionFactors at position 0.
func (t *Tape) retentionParallelRef(in RetentionVars) *Var {
	qs := in.Q.Shape()
	B, H, T := qs[0], qs[1], qs[2]
	if T == 0 {
		return t.Slice(in.V, 2, 0, 0)
	}
	f := newRetentionFactors(in.Gamma, 0, T)
	a := t.Mul(t.MatMul(in.Q, in.K, false, true), t.hostConst(f.mask, H, T, T)) // [B,H,T,T]
	abs := t.alloc(B, H, T, T)
	t.b.Unary(api.OpAbs, abs, a.value)
	den := t.alloc(B, H, T, 1)
	t.b.SumTo(den, abs)
	t.b.Free(abs)
	// The clamp on the host: exact, and den is one value per row.
	rows := api.Float32s(den)
	for i, x := range rows {
		rows[i] = min(max(x, 1), 5e4)
	}
	t.b.Free(den)
	den = api.FromFloat32s(t.b, rows, B, H, T, 1)
	return t.MatMul(t.Div(a, NewVar(den, false)), in.V, false, false)
}
