package cpu

import "sync"

// This file holds the single-precision GEMM behind MatMul. Everything goes
// through sgemm, so that a SIMD micro-kernel can later replace
// gemmKernel3x3 (and the blocking constants) without touching the callers.
//
// The general case is a packed, cache-blocked GEMM in the style of Goto and
// BLIS: for each panel of NC columns and each block of KC steps of the inner
// dimension, op(B) is packed into slivers of NR columns (shared by all
// workers), and each worker packs blocks of MC rows of op(A) into slivers of
// MR rows and multiplies them with a register-blocked MR x NR micro-kernel.
// Work is split statically over (row block, column chunk) units, and every
// element of C is accumulated in the same order whatever the split, so the
// result does not depend on the number of threads at all.
//
// Matrix-vector products (M == 1 or N == 1, the decode case) skip packing.

// Blocking parameters of the packed GEMM, sized for a 32 KiB L1 and a
// 512 KiB L2 data cache.
const (
	gemmMR = 3    // rows of the register tile
	gemmNR = 3    // columns of the register tile
	gemmKC = 256  // inner steps per packed block: an MR x KC and a KC x NR sliver (3 KiB each) stay in L1
	gemmMC = 96   // rows of a packed A block, a multiple of MR: MC x KC floats (96 KiB) stay in L2
	gemmNC = 3072 // columns of a packed B panel, a multiple of NR: KC x NC floats (3 MiB) stay in L3
	gemmJW = 192  // columns of C in one work unit, a multiple of NR

	// gemmMinWork is the number of multiply-adds worth handing to one
	// goroutine (about 30 µs of work).
	gemmMinWork = 1 << 18
	// gemmPackGrain is the number of elements worth packing on one goroutine.
	gemmPackGrain = 1 << 15
	// gemvBlock is the number of outputs a transposed matrix-vector product
	// accumulates at a time (on the stack).
	gemvBlock = 256
)

// splitter runs fn over [0,n) in static parts of at least grain items, as
// Backend.parallelGrain does.
type splitter func(n, grain int, fn func(lo, hi int))

// serial is the splitter that runs everything on the calling goroutine.
func serial(n, _ int, fn func(lo, hi int)) {
	if n > 0 {
		fn(0, n)
	}
}

// Pools of packing buffers (*[]float32): one for B panels, one for the A
// blocks of the workers.
var gemmPoolA, gemmPoolB sync.Pool

// gemmBuffer returns a pooled buffer of n floats from p; put it back with
// p.Put when done.
func gemmBuffer(p *sync.Pool, n int) *[]float32 {
	if v, ok := p.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]float32, n)
	return &s
}

// sgemm computes C = alpha * op(A) op(B) + beta * C for row-major matrices:
// op(A) is m x k (A is stored k x m when transA), op(B) is k x n (stored
// n x k when transB) and C is m x n, with leading dimensions (row strides)
// lda, ldb and ldc. With beta == 0 the old contents of C are not read, so
// NaN there does not propagate; with alpha == 0 or k == 0, A and B are not
// read. par splits the work.
func sgemm(par splitter, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	switch {
	case m == 0 || n == 0:
	case k == 0 || alpha == 0:
		gemmScale(par, m, n, beta, c, ldc)
	case m == 1 && (!transA || lda == 1):
		// One row of C: c[j] = sum_p a[p] op(B)[p,j].
		gemv(par, !transB, n, k, alpha, b, ldb, a[:k], beta, c[:n])
	case n == 1 && ldc == 1 && (transB || ldb == 1):
		// One column of C: c[i] = sum_p op(A)[i,p] b[p].
		gemv(par, transA, m, k, alpha, a, lda, b[:k], beta, c[:m])
	default:
		gemmPacked(par, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// gemmScale sets C = beta * C, or C = 0 when beta == 0.
func gemmScale(par splitter, m, n int, beta float32, c []float32, ldc int) {
	par(m, max(1, gemmPackGrain/n), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(row)
				continue
			}
			for j := range row {
				row[j] *= beta
			}
		}
	})
}

// gemmPacked is the blocked GEMM for the general case (see the file
// comment).
func gemmPacked(par splitter, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	bufB := gemmBuffer(&gemmPoolB, min(k, gemmKC)*roundUp(min(n, gemmNC), gemmNR))
	defer gemmPoolB.Put(bufB)
	for j0 := 0; j0 < n; j0 += gemmNC {
		nc := min(gemmNC, n-j0)
		slivers := (nc + gemmNR - 1) / gemmNR
		chunks := (nc + gemmJW - 1) / gemmJW
		blocks := (m + gemmMC - 1) / gemmMC
		for p0 := 0; p0 < k; p0 += gemmKC {
			kc := min(gemmKC, k-p0)
			bp := (*bufB)[:slivers*gemmNR*kc]
			par(slivers, max(1, gemmPackGrain/(kc*gemmNR)), func(lo, hi int) {
				gemmPackB(bp, b, ldb, transB, p0, kc, j0, nc, lo, hi)
			})
			// Blocks after the first add to what the first one stored.
			bet := beta
			if p0 > 0 {
				bet = 1
			}
			unitWork := min(m, gemmMC) * kc * min(nc, gemmJW)
			par(blocks*chunks, max(1, gemmMinWork/unitWork), func(lo, hi int) {
				bufA := gemmBuffer(&gemmPoolA, gemmMC*kc)
				defer gemmPoolA.Put(bufA)
				ap, packed := *bufA, -1
				for u := lo; u < hi; u++ {
					blk, chunk := u/chunks, u%chunks
					i0 := blk * gemmMC
					mc := min(gemmMC, m-i0)
					if blk != packed {
						gemmPackA(ap, a, lda, transA, i0, mc, p0, kc)
						packed = blk
					}
					jlo := chunk * gemmJW
					jhi := min(nc, jlo+gemmJW)
					gemmMacro(kc, ap, bp, mc, jlo, jhi, c[i0*ldc+j0:], ldc, alpha, bet)
				}
			})
		}
	}
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int { return (n + m - 1) / m * m }

// gemmPackA packs rows [i0, i0+mc) and inner steps [p0, p0+kc) of op(A)
// into dst as slivers of MR rows: element (r, p) of sliver s goes to
// dst[s*MR*kc + p*MR + r]. Rows past mc are zero.
func gemmPackA(dst, a []float32, lda int, transA bool, i0, mc, p0, kc int) {
	for s := 0; s*gemmMR < mc; s++ {
		d := dst[s*gemmMR*kc : (s+1)*gemmMR*kc]
		i := i0 + s*gemmMR
		rows := min(gemmMR, mc-s*gemmMR)
		if transA {
			// op(A)[i, p] = a[p*lda + i]: the rows of one step are adjacent.
			for p := range kc {
				src := a[(p0+p)*lda+i : (p0+p)*lda+i+rows]
				dp := d[p*gemmMR : p*gemmMR+gemmMR]
				copy(dp, src)
				clear(dp[rows:])
			}
			continue
		}
		for r := range gemmMR {
			if r >= rows {
				for p := range kc {
					d[p*gemmMR+r] = 0
				}
				continue
			}
			src := a[(i+r)*lda+p0 : (i+r)*lda+p0+kc]
			for p, v := range src {
				d[p*gemmMR+r] = v
			}
		}
	}
}

// gemmPackB packs slivers [lo, hi) of the panel of op(B) made of inner
// steps [p0, p0+kc) and columns [j0, j0+nc) into dst: element (p, c) of
// sliver s goes to dst[s*NR*kc + p*NR + c]. Columns past nc are zero.
func gemmPackB(dst, b []float32, ldb int, transB bool, p0, kc, j0, nc, lo, hi int) {
	for s := lo; s < hi; s++ {
		d := dst[s*gemmNR*kc : (s+1)*gemmNR*kc]
		j := j0 + s*gemmNR
		cols := min(gemmNR, nc-s*gemmNR)
		if !transB {
			// op(B)[p, j] = b[p*ldb + j]: the columns of one step are adjacent.
			for p := range kc {
				src := b[(p0+p)*ldb+j : (p0+p)*ldb+j+cols]
				dp := d[p*gemmNR : p*gemmNR+gemmNR]
				copy(dp, src)
				clear(dp[cols:])
			}
			continue
		}
		for col := range gemmNR {
			if col >= cols {
				for p := range kc {
					d[p*gemmNR+col] = 0
				}
				continue
			}
			src := b[(j+col)*ldb+p0 : (j+col)*ldb+p0+kc]
			for p, v := range src {
				d[p*gemmNR+col] = v
			}
		}
	}
}

// gemmMacro multiplies a packed A block (mc rows) with the packed B slivers
// covering columns [jlo, jhi) of the panel (jlo a multiple of NR), updating
// C (c starts at the block's first row and the panel's first column):
// C = alpha * A B + beta * C.
func gemmMacro(kc int, ap, bp []float32, mc, jlo, jhi int, c []float32, ldc int, alpha, beta float32) {
	for jr := jlo; jr < jhi; jr += gemmNR {
		nr := min(gemmNR, jhi-jr)
		bs := bp[jr*kc : jr*kc+gemmNR*kc]
		for ir := 0; ir < mc; ir += gemmMR {
			mr := min(gemmMR, mc-ir)
			as := ap[ir*kc : ir*kc+gemmMR*kc]
			cc := c[ir*ldc+jr:]
			if mr == gemmMR && nr == gemmNR {
				gemmKernel3x3(kc, as, bs, cc, ldc, alpha, beta)
				continue
			}
			// An edge tile: compute the whole padded tile, keep its valid part.
			var tile [gemmMR * gemmNR]float32
			gemmKernel3x3(kc, as, bs, tile[:], gemmNR, 1, 0)
			for i := range mr {
				row := cc[i*ldc : i*ldc+nr]
				for j := range row {
					v := alpha * tile[i*gemmNR+j]
					if beta != 0 {
						v += beta * row[j]
					}
					row[j] = v
				}
			}
		}
	}
}

// gemmKernel3x3 is the micro-kernel: with a an MR x kc sliver of packed A
// and b a kc x NR sliver of packed B, it sets the 3 x 3 tile at the start of
// c (row stride ldc) to alpha * a b + beta * tile (alpha * a b when beta
// == 0).
//
// The nine accumulators stay in registers. Each row's load of a keeps its
// bounds check on purpose: the check splits the loop body into blocks, which
// stops the compiler's scheduler from hoisting all products above all sums
// (which would spill them to the stack).
func gemmKernel3x3(kc int, a, b []float32, c []float32, ldc int, alpha, beta float32) {
	var c00, c01, c02, c10, c11, c12, c20, c21, c22 float32
	p := 0
	for ; p+4 <= kc; p += 4 {
		q := p * 3
		bb := b[q : q+12 : q+12]

		b0, b1, b2 := bb[0], bb[1], bb[2]
		a0 := a[q]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		a1 := a[q+1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		a2 := a[q+2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2

		b0, b1, b2 = bb[3], bb[4], bb[5]
		a0 = a[q+3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		a1 = a[q+4]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		a2 = a[q+5]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2

		b0, b1, b2 = bb[6], bb[7], bb[8]
		a0 = a[q+6]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		a1 = a[q+7]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		a2 = a[q+8]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2

		b0, b1, b2 = bb[9], bb[10], bb[11]
		a0 = a[q+9]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		a1 = a[q+10]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		a2 = a[q+11]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
	}
	for ; p < kc; p++ {
		q := p * 3
		bb := b[q : q+3 : q+3]
		b0, b1, b2 := bb[0], bb[1], bb[2]
		a0 := a[q]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		a1 := a[q+1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		a2 := a[q+2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
	}
	r0 := c[0:3:3]
	r1 := c[ldc : ldc+3 : ldc+3]
	r2 := c[2*ldc : 2*ldc+3 : 2*ldc+3]
	if beta == 0 {
		r0[0], r0[1], r0[2] = alpha*c00, alpha*c01, alpha*c02
		r1[0], r1[1], r1[2] = alpha*c10, alpha*c11, alpha*c12
		r2[0], r2[1], r2[2] = alpha*c20, alpha*c21, alpha*c22
		return
	}
	r0[0], r0[1], r0[2] = alpha*c00+beta*r0[0], alpha*c01+beta*r0[1], alpha*c02+beta*r0[2]
	r1[0], r1[1], r1[2] = alpha*c10+beta*r1[0], alpha*c11+beta*r1[1], alpha*c12+beta*r1[2]
	r2[0], r2[1], r2[2] = alpha*c20+beta*r2[0], alpha*c21+beta*r2[1], alpha*c22+beta*r2[2]
}
