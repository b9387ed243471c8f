//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// retStepHasAVX2 reports whether this CPU (and OS) runs retStepAVX2. Build
// with the purego tag to leave the kernel out.
var retStepHasAVX2 = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

// retStepAVX2 is retStepRow for n a multiple of 8, in AVX2 and FMA3, on raw
// pointers (src nil for none); see retstep_amd64.s.
//
//go:noescape
func retStepAVX2(n int, alpha, ka, qa float32, src, v, dst, o *float32)

// retStepRow advances one row of a retention state by one token and adds
// its share to the token's output: dst[i] = alpha*src[i] + ka*v[i] (ka*v[i]
// when src is nil), then o[i] += qa*dst[i], for i < len(dst). dst may be
// src; v and o are at least as long as dst. The whole blocks of eight run
// on the AVX2 kernel where the CPU has it (with fused multiply-adds), the
// rest in retStepGeneric; a given element always takes the same path for a
// given len(dst).
func retStepRow(alpha, ka, qa float32, src, v, dst, o []float32) {
	n := len(dst)
	if n8 := n &^ 7; retStepHasAVX2 && n8 > 0 {
		var sp *float32
		if src != nil {
			sp = &src[:n][0]
		}
		retStepAVX2(n8, alpha, ka, qa, sp, &v[:n][0], &dst[0], &o[:n][0])
		if src != nil {
			src = src[n8:]
		}
		v, dst, o = v[n8:], dst[n8:], o[n8:]
	}
	retStepGeneric(alpha, ka, qa, src, v, dst, o)
}
