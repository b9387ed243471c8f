//go:build !amd64 || purego

package cpu

// expVec sets d[i] = e^x[i] for i < len(d); x must be at least as long as
// d, and d may be x. Without a SIMD kernel (on architectures other than
// amd64, and on amd64 with the purego build tag) it is expGeneric.
func expVec(d, x []float32) { expGeneric(d, x) }

// expScaled sets d[r*n+j] = e^(s[r] a[r*n+j]) for r < len(s) and j < n,
// the product rounded to float32 first; d and a hold at least len(s)*n
// floats, and d may be a. Here it is expScaledGeneric.
func expScaled(d, a, s []float32, n int) { expScaledGeneric(d, a, s, n) }

// expNegAbs sets e[i] = e^-|x[i]| for i < len(e), which is in [0, 1] and
// never overflows; x must be at least as long as e, and e may be x. Here it
// is expNegAbsGeneric.
func expNegAbs(e, x []float32) { expNegAbsGeneric(e, x) }

// sigmoidVec reports false: there is no SIMD sigmoid here (see the amd64
// version).
func sigmoidVec(d, x []float32, silu bool) bool { return false }
