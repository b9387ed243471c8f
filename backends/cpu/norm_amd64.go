//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// normHasAVX2 reports whether this CPU runs the kernels of norm_amd64.s.
// Build with the purego tag to leave them out.
var normHasAVX2 = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

// rmsSumSquaresAVX2 returns the sum of x[i]^2 for i < n, n a multiple of
// 8, in float64 (see norm_amd64.s for the order).
//
//go:noescape
func rmsSumSquaresAVX2(x *float32, n int) float64

// rmsScaleAVX2 sets d[i] = float32(x[i] * inv * w[i]) (w nil: x[i] * inv)
// for i < n, n a multiple of 8, in float64.
//
//go:noescape
func rmsScaleAVX2(d, x, w *float32, n int, inv float64)

// rmsSumSquares returns the sum of x[i]^2 in float64: the whole blocks of
// eight on the AVX2 kernel where the CPU has it, then the rest in order.
func rmsSumSquares(x []float32) float64 {
	var ss float64
	if n := len(x) &^ 7; normHasAVX2 && n > 0 {
		ss = rmsSumSquaresAVX2(&x[0], n)
		x = x[n:]
	}
	return rmsSumSquaresFrom(ss, x)
}

// rmsScale sets d[i] = float32(x[i] * inv * w[i]) in float64, or
// float32(x[i] * inv) when w is nil; x and w (when not nil) are at least
// as long as d, and d may be x.
func rmsScale(d, x, w []float32, inv float64) {
	if n := len(d) &^ 7; normHasAVX2 && n > 0 {
		var wp *float32
		if w != nil {
			wp = &w[:n][0]
			w = w[n:]
		}
		rmsScaleAVX2(&d[0], &x[:n][0], wp, n, inv)
		d, x = d[n:], x[n:]
	}
	rmsScaleGeneric(d, x, w, inv)
}
