//go:build !amd64 || purego

package cpu

// rmsSumSquares returns the sum of x[i]^2, accumulated in float64 in order.
func rmsSumSquares(x []float32) float64 { return rmsSumSquaresFrom(0, x) }

// rmsScale sets d[i] = float32(x[i] * inv * w[i]) in float64, or
// float32(x[i] * inv) when w is nil; here it is rmsScaleGeneric.
func rmsScale(d, x, w []float32, inv float64) { rmsScaleGeneric(d, x, w, inv) }
