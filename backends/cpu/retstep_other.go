//go:build !amd64 || purego

package cpu

// retStepRow advances one row of a retention state by one token and adds
// its share to the token's output: dst[i] = alpha*src[i] + ka*v[i] (ka*v[i]
// when src is nil), then o[i] += qa*dst[i], for i < len(dst). dst may be
// src; v and o are at least as long as dst. Here it is retStepGeneric.
func retStepRow(alpha, ka, qa float32, src, v, dst, o []float32) {
	retStepGeneric(alpha, ka, qa, src, v, dst, o)
}
