package cpu

import "github.com/densessm/densessm/api"

// scanBlock is the number of channels in one unit of scan work. The work
// items of both scan kernels are (batch row, channel block) pairs, and the
// backward pass sums its cross-channel terms (dBm, dCm) per block and then
// over blocks in a fixed order, so results do not depend on the thread
// count.
const scanBlock = 32

// scanData holds the checked inputs of a selective scan as host slices; d,
// h0 and inj (Inject) are nil when absent.
type scanData struct {
	B, T, E, N                      int
	x, delta, a, bm, cm, d, h0, inj []float32
}

// blocks returns the number of channel blocks per batch row.
func (s *scanData) blocks() int { return (s.E + scanBlock - 1) / scanBlock }

// scanInputs checks the shapes of in (see api.ScanArgs) and stores them in
// s as host slices.
func (b *Backend) scanInputs(s *scanData, op string, in api.ScanArgs) {
	x, delta, a := b.f32(in.X, op), b.f32(in.Delta, op), b.f32(in.A, op)
	bm, cm := b.f32(in.Bm, op), b.f32(in.Cm, op)
	d, h0, inj := b.f32OrNil(in.D, op), b.f32OrNil(in.H0, op), b.f32OrNil(in.Inject, op)
	xs := seqRank(op, "X", x, 3)
	as := seqRank(op, "A", a, 2)
	*s = scanData{B: xs[0], T: xs[1], E: xs[2], N: as[1]}
	wantShape(op, "Delta", delta, s.B, s.T, s.E)
	wantShape(op, "A", a, s.E, s.N)
	wantShape(op, "Bm", bm, s.B, s.T, s.N)
	wantShape(op, "Cm", cm, s.B, s.T, s.N)
	s.x, s.delta, s.a, s.bm, s.cm = x.f32, delta.f32, a.f32, bm.f32, cm.f32
	if d != nil {
		wantShape(op, "D", d, s.E)
		s.d = d.f32
	}
	if h0 != nil {
		wantShape(op, "H0", h0, s.B, s.E, s.N)
		s.h0 = h0.f32
	}
	if inj != nil {
		wantShape(op, "Inject", inj, s.B, s.T, s.E, s.N)
		s.inj = inj.f32
	}
}

// initState sets h, the state of channels [e0,e1) of batch row bi, to H0
// or to zero.
func (s *scanData) initState(h []float32, bi, e0, e1 int) {
	if s.h0 == nil {
		clear(h)
		return
	}
	copy(h, s.h0[(bi*s.E+e0)*s.N:(bi*s.E+e1)*s.N])
}

// scanOut are the optional outputs of run, as host slices (nil when not
// wanted):
//
//	y      [B,T,E]           the outputs y_t
//	pre    [B,T,E,N]         the states h_t before injection
//	states [T][block][N]     the carried (injected) states h'_t of the block
//	decays [T][block][N]     the decays exp(Delta_t A) of the block
type scanOut struct {
	y, pre, states, decays []float32
}

// decays sets w [block][N] to the decays exp(Delta_t[e] A[e,n]) of
// channels [e0,e1) at row (batch row, token) of the [B,T,E] inputs, as
// one vector exponential over the block.
func (s *scanData) decays(w []float32, row, e0, e1 int) {
	expScaled(w, s.a[e0*s.N:e1*s.N], s.delta[row*s.E+e0:row*s.E+e1], s.N)
}

// run advances h, the carried state of channels [e0,e1) of batch row bi,
// through all T tokens, writing into the outputs of out that are not nil.
// w is scratch space of len(h) floats for the decays of one token (not
// used when out.decays keeps them).
func (s *scanData) run(h, w []float32, out scanOut, bi, e0, e1 int) {
	N, E := s.N, s.E
	w = w[:len(h)]
	for t := range s.T {
		row := bi*s.T + t
		if out.decays != nil {
			w = out.decays[t*len(h) : (t+1)*len(h)]
		}
		s.decays(w, row, e0, e1)
		xr, dr := s.x[row*E+e0:row*E+e1], s.delta[row*E+e0:row*E+e1]
		br, cr := s.bm[row*N:(row+1)*N], s.cm[row*N:(row+1)*N]
		if out.pre == nil && s.inj == nil && s.fastToken(h, w, xr, dr, br, cr, out.y, row, e0) {
			if out.states != nil {
				copy(out.states[t*len(h):], h)
			}
			continue
		}
		for j, dt := range dr {
			xv := xr[j]
			dx := dt * xv
			hr, wr := h[j*N:(j+1)*N], w[j*N:(j+1)*N]
			at := (row*E + e0 + j) * N // offset of (b,t,e) in [B,T,E,N] tensors
			// The output sums into eight lanes, as the SIMD kernel does
			// (see scanChannelsFast), so that every path gives the same
			// bits. The conversions keep the compiler from fusing the
			// products into the sums.
			var lanes [8]float32
			if out.pre == nil && s.inj == nil {
				// The common case, in a loop free of branches and bounds
				// checks; the same operations in the same order as below.
				wr, br, cr := wr[:len(hr)], br[:len(hr)], cr[:len(hr)]
				for n, hv := range hr {
					v := float32(wr[n]*hv) + float32(dx*br[n])
					hr[n] = v
					lanes[n&7] += float32(v * cr[n])
				}
			} else {
				for n, hv := range hr {
					v := float32(wr[n]*hv) + float32(dx*br[n])
					if out.pre != nil {
						out.pre[at+n] = v
					}
					if s.inj != nil {
						v += s.inj[at+n]
					}
					hr[n] = v
					lanes[n&7] += float32(v * cr[n])
				}
			}
			if out.y != nil {
				acc := scanLanes(&lanes)
				if s.d != nil {
					acc += float32(s.d[e0+j] * xv)
				}
				out.y[row*E+e0+j] = acc
			}
		}
		if out.states != nil {
			copy(out.states[t*len(h):], h)
		}
	}
}

// scanLanes returns the sum of the eight lanes of a scan output in the
// order of the SIMD kernel's reduction: ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)).
func scanLanes(l *[8]float32) float32 {
	return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

// fastToken runs one token of run for the channels [e0, e0+len(dr)) on
// the SIMD kernel (scanChannelsFast) when there is one, adding the skip
// term D x to their outputs at row of y (y nil: the outputs are not
// wanted), and reports whether it did. Without injection and without
// pre-injection states only.
func (s *scanData) fastToken(h, w, xr, dr, br, cr, y []float32, row, e0 int) bool {
	var scratch [scanBlock]float32
	yr := scratch[:len(dr)]
	if y != nil {
		yr = y[row*s.E+e0 : row*s.E+e0+len(dr)]
	}
	if !scanChannelsFast(h, w, xr, dr, br, cr, yr, s.N) {
		return false
	}
	if y != nil && s.d != nil {
		d := s.d[e0 : e0+len(yr)]
		for j, xv := range xr[:len(yr)] {
			yr[j] += float32(d[j] * xv)
		}
	}
	return true
}

// SelectiveScan runs the Mamba recurrence with optional injection (see
// api.Kernels) and sets y [B,T,E], the final carried state hT [B,E,N] when
// hT is not nil, and the pre-injection states hs [B,T,E,N] when hs is not
// nil. The state is float32, as in the reference implementations; each
// (batch row, channel block) pair is an independent unit of work.
func (b *Backend) SelectiveScan(y, hT, hs api.Tensor, in api.ScanArgs) {
	const op = "SelectiveScan"
	t := scanTasks.get()
	s := &t.s
	b.scanInputs(s, op, in)
	yt, ht, hst := b.f32(y, op), b.f32OrNil(hT, op), b.f32OrNil(hs, op)
	wantShape(op, "y", yt, s.B, s.T, s.E)
	t.out.y = yt.f32
	if ht != nil {
		wantShape(op, "hT", ht, s.B, s.E, s.N)
		t.hT = ht.f32
	}
	if hst != nil {
		wantShape(op, "hs", hst, s.B, s.T, s.E, s.N)
		t.out.pre = hst.f32
	}
	b.run(s.B*s.blocks(), 1, t)
	scanTasks.put(t)
}

// scanTask runs the forward scan of (batch row, channel block) units,
// writing out and, when not nil, the final states hT [B,E,N].
type scanTask struct {
	s   scanData
	out scanOut
	hT  []float32
}

var (
	scanTasks  taskPool[scanTask]
	scanStates floatPool // the running states and decays of the workers, 2 x [block][N]
)

func (t *scanTask) run(lo, hi int) {
	s, nb := &t.s, t.s.blocks()
	m := scanBlock * s.N
	h := scanStates.get(2 * m)
	for u := lo; u < hi; u++ {
		bi, e0 := u/nb, (u%nb)*scanBlock
		e1 := min(e0+scanBlock, s.E)
		hb := (*h)[:(e1-e0)*s.N]
		s.initState(hb, bi, e0, e1)
		s.run(hb, (*h)[m:], t.out, bi, e0, e1)
		if t.hT != nil {
			copy(t.hT[(bi*s.E+e0)*s.N:], hb)
		}
	}
	scanStates.put(h)
}

// scanGradOut holds the gradient outputs of SelectiveScanGrad as host
// slices (nil when not wanted) and the per-block partial sums that are
// reduced after the parallel pass:
//
//	bmPart, cmPart [B][blocks][T][N]   sums over the block's channels
//	aPart          [B][E][N]           sums over time, per batch row
//	dPart          [B][E]              sums over time, per batch row
type scanGradOut struct {
	x, delta, a, bm, cm, d, h0, inj []float32
	bmPart, cmPart                  []float32
	aPart, dPart                    []float64
}

// SelectiveScanGrad sets the gradients of the scan's inputs from dy [B,T,E],
// dhT [B,E,N] and dhs [B,T,E,N] (either nil for zero). Each unit recomputes
// its forward carried states, stores them (T+1 states of its block), and
// walks back in time carrying dh = dL/dh'_t, the gradient at the carried
// state:
//
//	dh'_t    = dhCarry + dy_t[e] Cm_t[n]      (dInject_t = dh'_t)
//	dh_t     = dh'_t + dhs_t                  (at the pre-injection state)
//	dCm_t   += dy_t[e] h'_t          dBm_t  += dh_t Delta_t X_t
//	dX_t     = sum_n dh_t Delta_t Bm_t[n] + dy_t D[e]
//	dDelta_t = sum_n dh_t (Bm_t[n] X_t + A h'_{t-1} exp(Delta_t A))
//	dA      += dh_t h'_{t-1} Delta_t exp(Delta_t A)
//	dhCarry  = dh_t exp(Delta_t A)            (dH0 = dhCarry at the end)
//
// with dh carried and sums accumulated in float64.
func (b *Backend) SelectiveScanGrad(g api.ScanGrads, in api.ScanArgs, dy, dhT, dhs api.Tensor) {
	const op = "SelectiveScanGrad"
	s := new(scanData)
	b.scanInputs(s, op, in)
	dyt, dht, dhst := b.f32(dy, op), b.f32OrNil(dhT, op), b.f32OrNil(dhs, op)
	wantShape(op, "dy", dyt, s.B, s.T, s.E)
	up := scanUpstream{dy: dyt.f32}
	if dht != nil {
		wantShape(op, "dhT", dht, s.B, s.E, s.N)
		up.dhT = dht.f32
	}
	if dhst != nil {
		wantShape(op, "dhs", dhst, s.B, s.T, s.E, s.N)
		up.dhs = dhst.f32
	}
	if g.D != nil && in.D == nil || g.H0 != nil && in.H0 == nil || g.Inject != nil && in.Inject == nil {
		api.Panicf(api.ErrShape, "%s: gradient of D, H0 or Inject asked for without that input", op)
	}
	out := &scanGradOut{
		x:     b.scanGradField(op, "X", g.X, s.B, s.T, s.E),
		delta: b.scanGradField(op, "Delta", g.Delta, s.B, s.T, s.E),
		a:     b.scanGradField(op, "A", g.A, s.E, s.N),
		bm:    b.scanGradField(op, "Bm", g.Bm, s.B, s.T, s.N),
		cm:    b.scanGradField(op, "Cm", g.Cm, s.B, s.T, s.N),
		d:     b.scanGradField(op, "D", g.D, s.E),
		h0:    b.scanGradField(op, "H0", g.H0, s.B, s.E, s.N),
		inj:   b.scanGradField(op, "Inject", g.Inject, s.B, s.T, s.E, s.N),
	}
	nb := s.blocks()
	if out.bm != nil {
		out.bmPart = make([]float32, s.B*nb*s.T*s.N)
	}
	if out.cm != nil {
		out.cmPart = make([]float32, s.B*nb*s.T*s.N)
	}
	if out.a != nil {
		out.aPart = make([]float64, s.B*s.E*s.N)
	}
	if out.d != nil {
		out.dPart = make([]float64, s.B*s.E)
	}
	b.parallelGrain(s.B*nb, 1, func(lo, hi int) {
		w := newScanWork(s)
		for u := lo; u < hi; u++ {
			bi, e0 := u/nb, (u%nb)*scanBlock
			s.backBlock(w, out, up, bi, u%nb, e0, min(e0+scanBlock, s.E))
		}
	})
	b.scanReduce(s, out)
}

// scanUpstream holds the gradients arriving at the scan's outputs as host
// slices: dy [B,T,E], and dhT [B,E,N] and dhs [B,T,E,N] or nil for zero.
type scanUpstream struct {
	dy, dhT, dhs []float32
}

// scanGradField checks an optional gradient output against its shape and
// returns its storage, or nil.
func (b *Backend) scanGradField(op, what string, t api.Tensor, shape ...int) []float32 {
	c := b.f32OrNil(t, op)
	if c == nil {
		return nil
	}
	wantShape(op, "gradient "+what, c, shape...)
	return c.f32
}

// scanWork is the scratch memory of one worker of SelectiveScanGrad.
type scanWork struct {
	h        []float32 // running state of one block, [block][N]
	w        []float32 // scratch for run, [block][N]
	hs       []float32 // carried states h'_{-1..T-1} of one block, [T+1][block][N]
	decays   []float32 // decays exp(Delta_t A) of one block, [T][block][N]
	dh       []float64 // carried dL/dh of one block, [block][N]
	dA       []float64 // dA sums over time of one block, [block][N]
	dD       []float64 // dD sums over time of one block, [block]
	dx, dd   []float64 // dX_t and dDelta_t of one block, [block]
	dBt, dCt []float64 // dBm_t and dCm_t sums over the block's channels, [N]
	bc       []float64 // Bm_t and Cm_t in float64 for the SIMD kernel, [2][N]
}

func newScanWork(s *scanData) *scanWork {
	m := scanBlock * s.N
	return &scanWork{
		h: make([]float32, m), w: make([]float32, m), hs: make([]float32, (s.T+1)*m), decays: make([]float32, s.T*m),
		dh: make([]float64, m), dA: make([]float64, m), dD: make([]float64, scanBlock),
		dx: make([]float64, scanBlock), dd: make([]float64, scanBlock),
		dBt: make([]float64, s.N), dCt: make([]float64, s.N), bc: make([]float64, 2*s.N),
	}
}

// backBlock runs the backward pass of channels [e0,e1) (block blk) of batch
// row bi, writing dX, dDelta, dInject and dH0 directly and the
// cross-channel and cross-batch sums into the partial buffers of out.
func (s *scanData) backBlock(w *scanWork, out *scanGradOut, up scanUpstream, bi, blk, e0, e1 int) {
	N, E, T := s.N, s.E, s.T
	m := (e1 - e0) * N
	hs, decays := w.hs[:(T+1)*m], w.decays[:T*m]
	s.initState(hs[:m], bi, e0, e1)
	copy(w.h[:m], hs[:m])
	s.run(w.h[:m], w.w, scanOut{states: hs[m:], decays: decays}, bi, e0, e1)
	st := scanBackStep{
		n: N, a: s.a[e0*N : e1*N],
		dh: w.dh[:m], dA: w.dA[:m], dD: w.dD[:e1-e0], dB: w.dBt, dC: w.dCt,
		dx: w.dx[:e1-e0], dd: w.dd[:e1-e0], bc: w.bc,
	}
	if s.d != nil {
		st.d = s.d[e0:e1]
	}
	if up.dhT != nil {
		for i, v := range up.dhT[(bi*E+e0)*N : (bi*E+e1)*N] {
			st.dh[i] = float64(v)
		}
	} else {
		clear(st.dh)
	}
	clear(st.dA)
	clear(st.dD)
	for t := T - 1; t >= 0; t-- {
		row := bi*T + t
		r0, r1 := row*E+e0, row*E+e1 // the block's channels in [B,T,E] tensors
		st.hprev, st.hcur, st.decay = hs[t*m:(t+1)*m], hs[(t+1)*m:(t+2)*m], decays[t*m:(t+1)*m]
		st.br, st.cr = s.bm[row*N:(row+1)*N], s.cm[row*N:(row+1)*N]
		st.dt, st.x, st.dy = s.delta[r0:r1], s.x[r0:r1], up.dy[r0:r1]
		if out.inj != nil {
			st.inj = out.inj[r0*N : r1*N]
		}
		if up.dhs != nil {
			st.dhs = up.dhs[r0*N : r1*N]
		}
		if out.x != nil {
			st.outX = out.x[r0:r1]
		}
		if out.delta != nil {
			st.outDelta = out.delta[r0:r1]
		}
		part := ((bi*s.blocks()+blk)*T + t) * N
		if out.bmPart != nil {
			st.outB = out.bmPart[part : part+N]
		}
		if out.cmPart != nil {
			st.outC = out.cmPart[part : part+N]
		}
		if !scanBackFast(&st) {
			scanBackGeneric(&st)
		}
	}
	if out.h0 != nil {
		f64To32(out.h0[(bi*E+e0)*N:(bi*E+e1)*N], st.dh)
	}
	if out.aPart != nil {
		copy(out.aPart[(bi*E+e0)*N:], st.dA)
	}
	if out.dPart != nil {
		copy(out.dPart[bi*E+e0:], st.dD)
	}
}

// f64To32 sets d[i] = float32(s[i]) for i < len(d); s is at least as long
// as d.
func f64To32(d []float32, s []float64) {
	s = s[:len(d)]
	for i, v := range s {
		d[i] = float32(v)
	}
}

// scanBackStep holds the operands of one time step t of the backward pass
// (see SelectiveScanGrad) for the nch = len(dt) channels of one block, n
// states each:
//
//	hprev, hcur, decay [nch][n]  h'_{t-1}, h'_t and exp(Delta_t A) (float32)
//	a                  [nch][n]  the block's rows of A
//	br, cr             [n]       Bm_t and Cm_t
//	dt, x, dy          [nch]     Delta_t, X_t and dy_t of the channels
//	d                  [nch]     D, or nil without the skip term
//	inj                [nch][n]  output dInject_t, or nil
//	dhs                [nch][n]  the upstream dhs_t, or nil for zero
//	dh                 [nch][n]  dhCarry in, dhCarry for step t-1 out
//	dA                 [nch][n]  dA sums, added to
//	dD                 [nch]     dD sums, added to (only with d)
//	dB, dC             [n]       set to dBm_t and dCm_t of the block
//	dx, dd             [nch]     set to dX_t and dDelta_t
//	outX, outDelta     [nch]     set to float32(dx) and float32(dd), or nil
//	outB, outC         [n]       set to float32(dB) and float32(dC), or nil
//	bc                 [2][n]    scratch for the SIMD kernel
type scanBackStep struct {
	n                          int
	hprev, hcur, decay, a      []float32
	br, cr, dt, x, dy, d       []float32
	inj, dhs                   []float32
	outX, outDelta, outB, outC []float32
	dh, dA, dD, dB, dC, dx, dd []float64
	bc                         []float64
}

// scanBackGeneric is one time step of the backward pass (see
// scanBackStep) in Go, with any n and with or without inj and dhs; sums
// are taken in float64 in the order of the formulas of SelectiveScanGrad,
// each product rounded.
func scanBackGeneric(st *scanBackStep) {
	n := st.n
	m := len(st.dt) * n
	hprev, hcur, decay, a := st.hprev[:m], st.hcur[:m], st.decay[:m], st.a[:m]
	dh, dA := st.dh[:m], st.dA[:m]
	br, cr, dB, dC := st.br[:n], st.cr[:n], st.dB[:n], st.dC[:n]
	clear(dB)
	clear(dC)
	for j, dt := range st.dt {
		i0 := j * n
		dt64, x64, g64 := float64(dt), float64(st.x[j]), float64(st.dy[j])
		var dx, dd float64
		for k, an := range a[i0 : i0+n] {
			i := i0 + k
			hp := float64(hprev[i]) * float64(decay[i])
			gh := dh[i] + g64*float64(cr[k]) // at the carried state h'_t
			if st.inj != nil {
				st.inj[i] = float32(gh)
			}
			dC[k] += g64 * float64(hcur[i])
			if st.dhs != nil {
				gh += float64(st.dhs[i]) // now at the pre-injection h_t
			}
			dB[k] += gh * dt64 * x64
			dx += gh * dt64 * float64(br[k])
			dd += gh * (float64(br[k])*x64 + hp*float64(an))
			dA[i] += gh * hp * dt64
			dh[i] = gh * float64(decay[i])
		}
		if st.d != nil {
			dx += g64 * float64(st.d[j])
			st.dD[j] += g64 * x64
		}
		st.dx[j], st.dd[j] = dx, dd
		if st.outX != nil {
			st.outX[j] = float32(dx)
		}
		if st.outDelta != nil {
			st.outDelta[j] = float32(dd)
		}
	}
	if st.outB != nil {
		f64To32(st.outB, dB)
	}
	if st.outC != nil {
		f64To32(st.outC, dC)
	}
}

// scanReduce sums the partial buffers of out into dBm, dCm (over channel
// blocks), dA and dD (over batch rows), always in the same order.
func (b *Backend) scanReduce(s *scanData, out *scanGradOut) {
	nb, TN := s.blocks(), s.T*s.N
	sumBlocks := func(dst, part []float32) {
		b.parallel(s.B*TN, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				bi, r := i/TN, i%TN
				var acc float64
				for blk := range nb {
					acc += float64(part[(bi*nb+blk)*TN+r])
				}
				dst[i] = float32(acc)
			}
		})
	}
	if out.bm != nil {
		sumBlocks(out.bm, out.bmPart)
	}
	if out.cm != nil {
		sumBlocks(out.cm, out.cmPart)
	}
	sumBatch := func(dst []float32, part []float64) {
		n := len(dst)
		b.parallel(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				var acc float64
				for bi := range s.B {
					acc += part[bi*n+i]
				}
				dst[i] = float32(acc)
			}
		})
	}
	if out.a != nil {
		sumBatch(out.a, out.aPart)
	}
	if out.d != nil {
		sumBatch(out.d, out.dPart)
	}
}
