package cpu

import "math"

// A float32 exponential over slices, for the selective scan and the
// element-wise kernels. Both implementations (the pure-Go expGeneric below,
// which rounds every product, and the AVX2+FMA kernel of exp_amd64.s, 8
// floats per instruction with fused multiply-adds) follow the same steps:
//
//  1. clamp x to [expLo, expHi] (NaN passes through): below expLo, e^x
//     rounds to 0; above expHi it overflows to +Inf;
//  2. k = round(x log2 e), with the shifter trick: t = x log2 e + 1.5*2^23
//     has k in its low mantissa bits, and kf = t - 1.5*2^23;
//  3. r = (x - kf ln2Hi) - kf ln2Lo, |r| <= ln2/2, a two-constant
//     Cody-Waite split: ln2Hi has 15 significant bits, so kf ln2Hi (kf has
//     at most 8) and x - kf ln2Hi are exact;
//  4. e^r = 1 + (r + r^2 q(r)), q a degree-4 polynomial (so e^r is of
//     degree 6) fitted by a weighted Remez exchange to minimise the
//     relative error of e^r on |r| <= 0.347: 3.1e-9, 0.05 ulp;
//  5. e^x = e^r 2^k1 2^k2 with k1 = k>>1 and k2 = k - k1, both within the
//     normal exponents, so the first product is exact and only the second
//     rounds: once, into the subnormals or to +Inf where e^x lies there.
//
// Error: at most 1.02 ulp of the exact result (subnormal results counted in
// units of 2^-149) for every float32 input. TestExpExhaustive compared
// every float32 in [-104, 89] with math.Exp once (run it with
// DENSESSM_EXP_EXHAUSTIVE=1; about 17 minutes here): at most 1.0192 ulp
// for the AVX2 kernel (at -27.377993) and 0.9888 ulp for the pure-Go one;
// TestExpAccuracy checks about 8.6 million inputs on every run. NaN gives
// NaN, +Inf gives +Inf and -Inf gives 0.
//
// Each element's result depends on its input only, and the SIMD kernel
// computes the tails of slices in a padded block, so results do not depend
// on where a slice is split between threads.
const (
	expLo        = -104               // e^-104 < 2^-150: rounds to 0
	expHi        = 89                 // e^89 > MaxFloat32: overflows
	expLog2E     = 1.4426950408889634 // log2 e
	expShift     = 0x1.8p23           // 1.5*2^23, rounds x log2 e to an integer
	expShiftBits = 0x4b400000         // math.Float32bits(expShift)
	expLn2Hi     = 0.693145751953125  // 45426/2^16: ln 2 to 15 bits
	expLn2Lo     = 1.428606765330187e-6
	expC2        = 0.49999994039535522
	expC3        = 0.16666519641876221
	expC4        = 0.041668396443128586
	expC5        = 0.0083687966689467430
	expC6        = 0.0013814433477818966
)

// expGeneric is expVec in pure Go.
func expGeneric(d, x []float32) {
	x = x[:len(d)]
	for i, v := range x {
		d[i] = exp32(v)
	}
}

// expScaledGeneric is expScaled in Go: the products, then expVec over all
// rows.
func expScaledGeneric(d, a, s []float32, n int) {
	m := len(s) * n
	d, a = d[:m], a[:m]
	for r, sr := range s {
		dr := d[r*n : (r+1)*n]
		for j, v := range a[r*n : (r+1)*n] {
			dr[j] = sr * v
		}
	}
	expVec(d, d)
}

// expNegAbsGeneric is expNegAbs in Go: -|x| with the sign bit set, then
// expVec, which gives the bits of the SIMD kernel where there is one.
func expNegAbsGeneric(e, x []float32) {
	for i, v := range x[:len(e)] {
		e[i] = math.Float32frombits(math.Float32bits(v) | 1<<31)
	}
	expVec(e, e)
}

// exp32 is e^v by the steps in the comment above. The conversions
// float32(a*b) round each product before it is added, which keeps the
// compiler from fusing the two into a multiply-add (the Go spec allows
// that, and the arm64 compiler does it), so the pure-Go results are the
// same on every architecture.
func exp32(v float32) float32 {
	v = min(max(v, expLo), expHi)
	t := float32(v*expLog2E) + expShift
	kf := t - expShift
	r := v - float32(kf*expLn2Hi)
	r -= float32(kf * expLn2Lo)
	q := float32(expC6*r) + expC5
	q = float32(q*r) + expC4
	q = float32(q*r) + expC3
	q = float32(q*r) + expC2
	p := 1 + (float32(q*(r*r)) + r)
	k := int32(math.Float32bits(t) - expShiftBits)
	k1 := k >> 1
	s1 := math.Float32frombits(uint32(k1+127) << 23)
	s2 := math.Float32frombits(uint32(k-k1+127) << 23)
	return p * s1 * s2
}
