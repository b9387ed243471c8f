//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// scanHasAVX2 reports whether this CPU runs scanChannelsAVX2. Build with
// the purego tag to leave it out.
var scanHasAVX2 = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

// scanChannelsAVX2 advances nch channels of n states (n a positive
// multiple of 8) by one token and sets their outputs before the skip term
// (see scan_amd64.s).
//
//go:noescape
func scanChannelsAVX2(nch, n int, h, w, x, dt, b, c, y *float32)

// scanChannelsFast is the common case of scanData.run's token step (no
// injection, no pre-injection states kept, outputs wanted) for the
// channels of h (len(h)/n of them) on the AVX2 kernel: it sets the states
// h and y[j] = sum_n h[j,n] c[n], and reports true; it reports false, and
// does nothing, when the CPU lacks AVX2 or n is not a multiple of 8.
func scanChannelsFast(h, w, x, dt, b, c, y []float32, n int) bool {
	nch := len(dt)
	if !scanHasAVX2 || n%8 != 0 || n == 0 || nch == 0 {
		return false
	}
	_, _, _, _, _, _ = h[nch*n-1], w[nch*n-1], x[nch-1], y[nch-1], b[n-1], c[n-1]
	scanChannelsAVX2(nch, n, &h[0], &w[0], &x[0], &dt[0], &b[0], &c[0], &y[0])
	return true
}

// scanBackHasAVX2 reports whether this CPU runs scanBackAVX2. Build with
// the purego tag to leave it out.
var scanBackHasAVX2 = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

// scanBackAVX2 is one time step of the scan's backward pass (see
// scanBackStep and scan_amd64.s) for nch channels of n states (n a
// positive multiple of 4), without injection or dhs, in float64 lanes with
// fused multiply-adds; d may be nil, and bc is scratch of 2n float64.
//
//go:noescape
func scanBackAVX2(nch, n int, hprev, hcur, decay, a, br, cr *float32, bc *float64, dt, x, dy, d *float32,
	dh, dA, dB, dC, dx, dd, dD *float64, ox, odelta, ob, oc *float32)

// scanBackFast runs the time step st on the AVX2 kernel, and reports true,
// when the CPU has AVX2 and FMA, st.n is a multiple of 4 and there is no
// inj or dhs; else it reports false and does nothing. The results differ
// from scanBackGeneric's only by rounding: the kernel fuses multiply-adds
// and, with g = dL/dh_t, sums dX_t as Delta_t sum_n(g Bm) + dy D and
// dDelta_t as X_t sum_n(g Bm) + sum_n(g h'_{t-1} exp(Delta_t A) A).
func scanBackFast(st *scanBackStep) bool {
	nch, n := len(st.dt), st.n
	if !scanBackHasAVX2 || n%4 != 0 || n == 0 || nch == 0 || st.inj != nil || st.dhs != nil {
		return false
	}
	m := nch * n
	_, _, _, _, _, _ = st.hprev[m-1], st.hcur[m-1], st.decay[m-1], st.a[m-1], st.dh[m-1], st.dA[m-1]
	_, _, _, _, _ = st.br[n-1], st.cr[n-1], st.dB[n-1], st.dC[n-1], st.bc[2*n-1]
	_, _, _, _, _ = st.x[nch-1], st.dy[nch-1], st.dx[nch-1], st.dd[nch-1], st.dD[nch-1]
	scanBackAVX2(nch, n, &st.hprev[0], &st.hcur[0], &st.decay[0], &st.a[0], &st.br[0], &st.cr[0], &st.bc[0],
		&st.dt[0], &st.x[0], &st.dy[0], first(st.d, nch), &st.dh[0], &st.dA[0], &st.dB[0], &st.dC[0],
		&st.dx[0], &st.dd[0], &st.dD[0], first(st.outX, nch), first(st.outDelta, nch), first(st.outB, n), first(st.outC, n))
	return true
}

// first returns &v[0] after checking that v holds at least n floats, or
// nil when v is nil.
func first(v []float32, n int) *float32 {
	if v == nil {
		return nil
	}
	return &v[:n][0]
}
