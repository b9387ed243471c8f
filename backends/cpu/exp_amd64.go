//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// expHasAVX2 reports whether this CPU (and OS) runs expKernelAVX2. Build
// with the purego tag to leave the kernel out.
var expHasAVX2 = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

// expVec sets d[i] = e^x[i] for i < len(d); x must be at least as long as
// d, and d may be x. It runs the AVX2+FMA kernel where the CPU has both,
// else expGeneric.
func expVec(d, x []float32) {
	if expHasAVX2 {
		expAVX2(d, x, 0)
		return
	}
	expGeneric(d, x)
}

// expNegAbs sets e[i] = e^-|x[i]| for i < len(e), which is in [0, 1] and
// never overflows; x must be at least as long as e, and e may be x. It
// runs the AVX2+FMA kernel where the CPU has both, else expNegAbsGeneric.
func expNegAbs(e, x []float32) {
	if expHasAVX2 {
		expAVX2(e, x, 1<<31)
		return
	}
	expNegAbsGeneric(e, x)
}

// expScaled sets d[r*n+j] = e^(s[r] a[r*n+j]) for r < len(s) and j < n,
// the product rounded to float32 first; d and a hold at least len(s)*n
// floats, and d may be a. Rows whose length n is a multiple of 8 go
// through one call of the AVX2 kernel; otherwise it is expScaledGeneric,
// which gives the same bits.
func expScaled(d, a, s []float32, n int) {
	if !expHasAVX2 || n%8 != 0 || n == 0 || len(s) == 0 {
		expScaledGeneric(d, a, s, n)
		return
	}
	_, _ = d[len(s)*n-1], a[len(s)*n-1]
	expScaledKernelAVX2(&d[0], &a[0], &s[0], len(s), n)
}

// expKernelAVX2 sets d[i] = e^x'[i] for i < n, 8 floats at a time, where
// x' has the bits of x ORed with sign; n must be a multiple of 8.
//
//go:noescape
func expKernelAVX2(d, x *float32, n int, sign uint32)

// expScaledKernelAVX2 is expScaled for rows of n floats, n a positive
// multiple of 8.
//
//go:noescape
func expScaledKernelAVX2(d, a, s *float32, rows, n int)

// expAVX2 runs expKernelAVX2 over d and x: the whole blocks of 8 in place,
// and the tail of len(d)%8 floats padded to a block on the stack, so that
// every element goes through the same instructions.
func expAVX2(d, x []float32, sign uint32) {
	x = x[:len(d)]
	n := len(d) &^ 7
	if n > 0 {
		expKernelAVX2(&d[0], &x[0], n, sign)
	}
	if n < len(d) {
		var buf [8]float32
		copy(buf[:], x[n:])
		expKernelAVX2(&buf[0], &buf[0], 8, sign)
		copy(d[n:], buf[:])
	}
}

// sigmoidKernelAVX2 sets d[i] to sigmoid(x[i]), or silu(x[i]) when silu,
// for i < n, n a multiple of 8: e^-|x[i]| from the AVX2 exponential, the
// rest in float64 rounded once. For silu it reports whether some
// x[i] < -87.3 (see siluFar).
//
//go:noescape
func sigmoidKernelAVX2(d, x *float32, n int, silu bool) (far bool)

// sigmoidVec sets d[i] = sigmoid(x[i]), or silu(x[i]) when silu, for
// i < len(d), and reports true, where the CPU runs the AVX2 kernel: the
// whole blocks of 8 in place and the tail padded to a block on the stack,
// so that every element goes through the same instructions; silu's
// elements below -87.3, where e^x is subnormal, then take siluFar. It
// reports false, and does nothing, without AVX2. x is at least as long as
// d, and d may be x.
func sigmoidVec(d, x []float32, silu bool) bool {
	if !expHasAVX2 {
		return false
	}
	x = x[:len(d)]
	n := len(d) &^ 7
	var far bool
	if n > 0 {
		far = sigmoidKernelAVX2(&d[0], &x[0], n, silu)
	}
	if n < len(d) {
		var buf [8]float32
		copy(buf[:], x[n:])
		far = sigmoidKernelAVX2(&buf[0], &buf[0], 8, silu) || far
		copy(d[n:], buf[:])
	}
	if far {
		for i, v := range x {
			if v < siluFarBelow {
				y, _ := siluFar(v)
				d[i] = float32(y)
			}
		}
	}
	return true
}
