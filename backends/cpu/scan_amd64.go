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
