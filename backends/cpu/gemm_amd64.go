//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// The SIMD micro-kernels of gemm_amd64.s. Build with the purego tag to
// leave them out and use the pure-Go kernel only.
//
// Blocking: the kernel keeps a KC x NR sliver of packed B in L1 while it
// runs down the MR-row slivers of an MC x KC block of packed A held in L2;
// a KC x NC panel of B sits in L3.
//   - avx512: 12 x 32 tile, 24 zmm accumulators (of 32 registers), 2 loads
//     of B and 12 broadcasts of A per 24 FMAs. KC = 256 makes the B sliver
//     32 KiB, a whole L1 on most AVX-512 CPUs, yet it beat KC = 128 (16
//     KiB) by 5-10% on an AMD Zen 4 (fewer passes over C, and L2 keeps
//     up), and 192 and 320 were no better; MC = 192 makes the A block
//     192 KiB.
//   - avx2: 6 x 16 tile, 12 ymm accumulators (of 16 registers), 2 loads of
//     B and 6 broadcasts of A per 12 FMAs: enough independent sums to
//     cover the FMA latency on two pipes. KC = 256 keeps the B sliver at
//     16 KiB; MC = 192 makes the A block 192 KiB.
//
// NC = 3072 (a panel of at most 3 MiB), as for the generic kernel.
var gemmArchKernels = []*gemmKernel{
	{
		name: "avx512", supported: xcpu.X86.HasAVX512F,
		mr: 12, nr: 32, kc: 256, mc: 192, nc: 3072,
		tile: gemmTileAVX512,
	},
	{
		name: "avx2", supported: xcpu.X86.HasAVX2 && xcpu.X86.HasFMA,
		mr: 6, nr: 16, kc: 256, mc: 192, nc: 3072,
		tile: gemmTileAVX2,
	},
}

// gemmKernel12x32AVX512 is gemmKernel.tile for a 12 x 32 tile in AVX-512F,
// on raw pointers: c is the tile's first element and ldc its row stride in
// floats.
//
//go:noescape
func gemmKernel12x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// gemmKernel6x16AVX2 is gemmKernel.tile for a 6 x 16 tile in AVX2 and FMA3,
// on raw pointers: c is the tile's first element and ldc its row stride in
// floats.
//
//go:noescape
func gemmKernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// gemmTileAVX512 checks the bounds of the 12 x 32 tile and runs the
// assembly kernel.
func gemmTileAVX512(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _, _ = a[12*kc-1], b[32*kc-1], c[11*ldc+31]
	gemmKernel12x32AVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}

// gemmTileAVX2 checks the bounds of the 6 x 16 tile and runs the assembly
// kernel.
func gemmTileAVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _, _ = a[6*kc-1], b[16*kc-1], c[5*ldc+15]
	gemmKernel6x16AVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}

// gemmPackCols16AVX2 sets d[p*dw + x] = src[x*ld + p] for x < 16 and
// p < kc, kc a multiple of 8, with 8x8 transposes in AVX2.
//
//go:noescape
func gemmPackCols16AVX2(d, src *float32, ld, kc, dw int)

// gemmPackCols6AVX2 sets d[p*dw + x] = src[x*ld + p] for x < 6 and
// p < kc, kc a multiple of 8, in AVX2.
//
//go:noescape
func gemmPackCols6AVX2(d, src *float32, ld, kc, dw int)

// gemmPackRowsAVX2 sets d[r*w + x] = src[r*ld + x] for r < rows and
// x < w, w a multiple of 8.
//
//go:noescape
func gemmPackRowsAVX2(d, src *float32, ld, w, rows int)

// gemmPackRowsFast is the copy of gemmPackRuns for rows of w = 8, 16, 24...
// values on AVX2 CPUs: it sets d[r*w + x] = src[r*ld + x] for r < rows and
// x < w, and reports false, having done nothing, for other widths or CPUs.
func gemmPackRowsFast(d, src []float32, ld, w, rows int) bool {
	if w%8 != 0 || rows == 0 || !xcpu.X86.HasAVX2 {
		return false
	}
	_, _ = d[w*rows-1], src[(rows-1)*ld+w-1]
	gemmPackRowsAVX2(&d[0], &src[0], ld, w, rows)
	return true
}

// gemmPackColsFast is gemmPackCols for a whole sliver (n == w) of a
// multiple of 16 columns of B or of 6 rows of A (16 and 32, 6 and 12 for
// the kernels here) on AVX2 CPUs: the steps in blocks of eight through the
// assembly transposes, 16 or 6 runs at a time, the rest in Go. It reports
// false, having done nothing, for other shapes or CPUs.
func gemmPackColsFast(d, src []float32, ld, w, n, kc int) bool {
	kc8 := kc &^ 7
	if (w%16 != 0 && w%6 != 0) || n != w || kc8 == 0 || !xcpu.X86.HasAVX2 {
		return false
	}
	_, _ = d[w*kc-1], src[(w-1)*ld+kc-1]
	if w%16 == 0 {
		for x := 0; x < w; x += 16 {
			gemmPackCols16AVX2(&d[x], &src[x*ld], ld, kc8, w)
		}
	} else {
		for x := 0; x < w; x += 6 {
			gemmPackCols6AVX2(&d[x], &src[x*ld], ld, kc8, w)
		}
	}
	if kc8 < kc {
		gemmPackCols(d[w*kc8:], src[kc8:], ld, w, n, kc-kc8)
	}
	return true
}
