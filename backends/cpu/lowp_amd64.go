//go:build amd64 && !purego

package cpu

import (
	"github.com/densessm/densessm/api"
	xcpu "golang.org/x/sys/cpu"
)

// lowDotsArch holds the AVX2 kernels of lowp_amd64.s (with FMA3, and F16C
// for the Q8_0 scales). Build with the purego tag to leave them out.
var lowDotsArch = []*lowDots{
	{name: "avx2", supported: xcpu.X86.HasAVX2 && xcpu.X86.HasFMA && hasF16C(), arch: true},
}

// hasF16C reports whether the CPU has the F16C conversions (CPUID leaf 1,
// ECX bit 29), which x/sys/cpu does not name.
func hasF16C() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return ecx&(1<<29) != 0
}

// cpuid executes CPUID with the leaf and subleaf given.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// bf16Dot4x1AVX2 sets out[r] to the dot product of the n bfloat16
// elements of row wr with the vector at x0, for r < 4; n is a multiple of
// 8 (x1 is unused).
//
//go:noescape
func bf16Dot4x1AVX2(n int, w0, w1, w2, w3 *byte, x0, x1, out *float32)

// bf16Dot4x2AVX2 is bf16Dot4x1AVX2 for the two vectors x0 and x1:
// out[i*4+r].
//
//go:noescape
func bf16Dot4x2AVX2(n int, w0, w1, w2, w3 *byte, x0, x1, out *float32)

// bf16Dot8x1AVX2 sets out[r] to the dot product of the n bfloat16
// elements of the row at w + r*ldw bytes with the vector at x, for r < 8;
// n is a multiple of 8.
//
//go:noescape
func bf16Dot8x1AVX2(n int, w *byte, ldw int, x, out *float32)

// q8Dot4x1AVX2 sets out[r] to the dot product of the n Q8_0 blocks of
// row wr with the vector quantized to 16 bits at xq and xd, for r < 4.
//
//go:noescape
func q8Dot4x1AVX2(n int, w0, w1, w2, w3 *byte, xq *int16, xd, out *float32)

// q8Dot8x1AVX2 is q8Dot4x1AVX2 for the eight rows at w + r*ldw bytes.
//
//go:noescape
func q8Dot8x1AVX2(n int, w *byte, ldw int, xq *int16, xd, out *float32)

// widenBF16AVX2 sets dst[i] to the bfloat16 at src + 2i as float32, for
// i < n; n is a multiple of 16.
//
//go:noescape
func widenBF16AVX2(dst *float32, src *byte, n int)

// widenQ8AVX2 sets dst[32b+i] to element i of the Q8_0 block at
// src + 34b, for b < n.
//
//go:noescape
func widenQ8AVX2(dst *float32, src *byte, n int)

// quantizeQ16AVX2 is quantizeQ16 of n blocks: q and x hold 32n elements,
// d n scales.
//
//go:noescape
func quantizeQ16AVX2(q *int16, d, x *float32, n int)

// quantizeQ16Arch quantizes with the assembly kernel where the CPU has it
// and returns whether it did.
func quantizeQ16Arch(q []int16, d, x []float32) bool {
	if !lowDotsArch[0].supported || len(d) == 0 {
		return false
	}
	_, _ = q[len(d)*api.Q8Block-1], x[len(d)*api.Q8Block-1]
	quantizeQ16AVX2(&q[0], &d[0], &x[0], len(d))
	return true
}

// widenArch widens what it can of dst from src (see lowMatrix.widen):
// BF16 elements 16 at a time, Q8_0 whole blocks (src starts at a block),
// and returns how many elements it set.
func widenArch(dst []float32, d api.DType, src []byte) int {
	if !lowDotsArch[0].supported {
		return 0
	}
	if d == api.BF16 {
		n := len(dst) &^ 15
		if n > 0 {
			_ = src[2*n-1]
			widenBF16AVX2(&dst[0], &src[0], n)
		}
		return n
	}
	blocks := len(dst) / api.Q8Block
	if blocks > 0 {
		_ = src[blocks*api.Q8BlockBytes-1]
		widenQ8AVX2(&dst[0], &src[0], blocks)
	}
	return blocks * api.Q8Block
}

// lowDotArch is lowDots.dot with the assembly kernels. BF16 elements past
// the last multiple of 8 are added in Go, in lane order, after the
// kernel's sum.
func lowDotArch(m *lowMatrix, rs *lowRows, v []lowVec, out *[8]float32) {
	k := m.cols
	if k == 0 {
		clear(out[:])
		return
	}
	// The kernels cannot check bounds: these slices do.
	first, last := rs.row(0), rs.row(rs.n-1)
	if rs.at == nil {
		_ = m.raw[first*m.rowBytes : (last+1)*m.rowBytes]
	}
	var r [4]*byte
	if rs.at != nil {
		for i, j := range rs.at {
			r[i] = &m.row(j)[0]
		}
	}
	ldw := rs.stride * m.rowBytes
	if m.dtype == api.Q8_0 {
		x := &v[0]
		n := k / api.Q8Block
		_, _ = x.q[k-1], x.d[n-1]
		if rs.at == nil {
			q8Dot8x1AVX2(n, &m.raw[first*m.rowBytes], ldw, &x.q[0], &x.d[0], &out[0])
		} else {
			q8Dot4x1AVX2(n, r[0], r[1], r[2], r[3], &x.q[0], &x.d[0], &out[0])
		}
		return
	}
	k8 := k &^ 7
	switch {
	case k8 == 0:
		clear(out[:])
	case rs.at == nil:
		_ = v[0].f[k-1]
		bf16Dot8x1AVX2(k8, &m.raw[first*m.rowBytes], ldw, &v[0].f[0], &out[0])
	case len(v) == 1:
		_ = v[0].f[k-1]
		bf16Dot4x1AVX2(k8, r[0], r[1], r[2], r[3], &v[0].f[0], &v[0].f[0], &out[0])
	default:
		_, _ = v[0].f[k-1], v[1].f[k-1]
		bf16Dot4x2AVX2(k8, r[0], r[1], r[2], r[3], &v[0].f[0], &v[1].f[0], &out[0])
	}
	if k8 == k {
		return
	}
	for r := range rs.n {
		w := bf16Row(m.row(rs.row(r)), k)
		for i, x := range v {
			s := out[i*rs.n+r]
			for p := k8; p < k; p++ {
				s += api.BFloat16ToFloat32(w[p]) * x.f[p]
			}
			out[i*rs.n+r] = s
		}
	}
}
