package cpu

import (
	"math"
	"sync"
	"unsafe"
)

// This file holds the single-precision GEMM behind MatMul. Everything goes
// through sgemm.
//
// The general case is a packed, cache-blocked GEMM in the style of Goto and
// BLIS: for each panel of NC columns and each block of KC steps of the inner
// dimension, op(B) is packed into slivers of NR columns, and then blocks of
// at most MC rows of op(A) into slivers of MR rows, which a register-blocked
// MR x NR micro-kernel multiplies. Work is split statically: C is cut into
// one rectangle per worker, which packs and computes its rectangle alone,
// so that workers never wait for one another. Every element of C is
// accumulated in the same order whatever the split (over the inner steps
// of one packed block in order, then block after block), so the result
// does not depend on the number of threads.
//
// The micro-kernel, and with it MR, NR and the blocking, is chosen once at
// start-up by CPU features: on amd64, AVX-512 (12x32) if the CPU and OS
// support it, else AVX2 with FMA (6x16), both in Go assembly
// (gemm_amd64.s); elsewhere, and on amd64 when built with the purego build
// tag, the pure-Go 3x3 kernel below. Results differ between kernels in the
// last bits (the SIMD kernels fuse multiply and add), never between thread
// counts for one kernel.
//
// Matrix-vector products (M == 1 or N == 1, the decode case) and products
// of up to 8 rows with a transposed B (batched decode) skip packing: they go
// to gemv and gemvBatch, which stream the matrix once.

const (
	// gemmMinWork is the number of multiply-adds worth handing to one
	// goroutine (about 30 µs of work for the pure-Go kernel, 5 µs for the
	// SIMD ones).
	gemmMinWork = 1 << 18
	// gemmScaleGrain is the number of elements worth scaling on one
	// goroutine.
	gemmScaleGrain = 1 << 15
	// gemmPackCost is the cost of packing one element, counted in
	// multiply-adds of the micro-kernel (a load and a store against a
	// sixteenth of a cycle), for choosing how to cut C between workers.
	gemmPackCost = 8
	// gemvBlock is the number of outputs a transposed matrix-vector product
	// accumulates at a time (on the stack).
	gemvBlock = 256
	// gemmAlign is the alignment, in floats, of packing buffers: 64 bytes,
	// one cache line, so that no load of a packed B row splits a line.
	gemmAlign = 16
)

// gemmKernel is a micro-kernel of the packed GEMM together with the blocking
// that suits it.
type gemmKernel struct {
	name      string // "generic", "avx2" or "avx512"
	supported bool   // whether this CPU (and OS) can run it
	mr, nr    int    // rows and columns of the register tile
	kc        int    // inner steps per packed block
	mc        int    // most rows of a packed A block, a multiple of mr
	nc        int    // most columns of a packed B panel, a multiple of nr

	// tile sets the mr x nr tile at the start of c (row stride ldc) to
	// alpha * a b + beta * tile, where a is an mr x kc sliver of packed A
	// and b a kc x nr sliver of packed B, kc >= 1. With beta == 0 the tile
	// is not read. Each element is accumulated over the inner steps in
	// order.
	tile func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
}

// gemmGeneric is the pure-Go kernel, available everywhere. Its blocking is
// sized for a 32 KiB L1 and a 512 KiB L2 data cache: an MR x KC and a
// KC x NR sliver (3 KiB each) stay in L1, an MC x KC block of A (96 KiB) in
// L2 and a KC x NC panel of B (3 MiB) in L3.
var gemmGeneric = &gemmKernel{
	name: "generic", supported: true,
	mr: 3, nr: 3, kc: 256, mc: 96, nc: 3072,
	tile: gemmKernel3x3,
}

// gemmKernels lists every kernel compiled in, best first; the generic one
// is last. gemmArchKernels comes from the architecture's file.
var gemmKernels = append(gemmArchKernels[:len(gemmArchKernels):len(gemmArchKernels)], gemmGeneric)

// gemmBest is the kernel sgemm uses: the first supported one that passes
// gemmSelfTest.
var gemmBest = func() *gemmKernel {
	for _, k := range gemmKernels {
		if k.supported && (k == gemmGeneric || gemmSelfTest(k)) {
			return k
		}
	}
	return gemmGeneric
}()

// gemmSelfTest runs kern on a small product that has full and edge tiles
// and several KC blocks, with beta 0 and then beta 1, and compares it with
// the generic kernel to 1e-5 relative. A SIMD kernel that misbehaves on a
// CPU it was never run on is then not used (the AVX-512 kernel was checked
// only under emulation when it was written).
func gemmSelfTest(kern *gemmKernel) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	const m, n, k = 29, 45, 300
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(i*7919%97)/97 - 0.5
	}
	for i := range b {
		b[i] = float32(i*104729%89)/89 - 0.5
	}
	want, got := make([]float32, m*n), make([]float32, m*n)
	for _, beta := range []float32{0, 1} {
		sgemmWith(gemmGeneric, serial, false, false, m, n, k, 0.75, a, k, b, n, beta, want, n)
		sgemmWith(kern, serial, false, false, m, n, k, 0.75, a, k, b, n, beta, got, n)
	}
	var diff, scale float64
	for i := range want {
		diff = max(diff, math.Abs(float64(got[i]-want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return diff <= 1e-5*scale
}

// splitter runs t over [0,n) in static parts of at least grain items, at
// most width of them: a *Backend, or serial.
type splitter interface {
	run(n, grain int, t task)
	width() int
}

// serialSplitter is the splitter that runs everything on the calling
// goroutine.
type serialSplitter struct{}

func (serialSplitter) run(n, _ int, t task) {
	if n > 0 {
		t.run(0, n)
	}
}

func (serialSplitter) width() int { return 1 }

// serial runs everything on the calling goroutine.
var serial serialSplitter

// Pools of packing buffers (*[]float32): one for B panels, one for the A
// blocks of the workers.
var gemmPoolA, gemmPoolB sync.Pool

// gemmBuffer returns a pooled buffer of n floats from p whose first element
// is aligned to gemmAlign floats; put it back with p.Put when done.
func gemmBuffer(p *sync.Pool, n int) *[]float32 {
	if v, ok := p.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]float32, n+gemmAlign-1)
	off := int(uintptr(unsafe.Pointer(&s[0])) / 4 % gemmAlign)
	s = s[(gemmAlign-off)%gemmAlign:][:n]
	return &s
}

// sgemm computes C = alpha * op(A) op(B) + beta * C for row-major matrices:
// op(A) is m x k (A is stored k x m when transA), op(B) is k x n (stored
// n x k when transB) and C is m x n, with leading dimensions (row strides)
// lda, ldb and ldc. With beta == 0 the old contents of C are not read, so
// NaN there does not propagate; with alpha == 0 or k == 0, A and B are not
// read. par splits the work.
func sgemm(par splitter, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(gemmBest, par, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmWith is sgemm with the micro-kernel of the packed case given, which
// must be supported; tests use it to run every kernel.
func sgemmWith(kern *gemmKernel, par splitter, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
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
	case m <= gemvMaxBatch && !transA && transB:
		// A few rows of C (decoding a batch of sequences): B is streamed
		// from memory once for all of them.
		gemvBatch(par, n, k, alpha, b, ldb, a, lda, m, beta, c, ldc)
	default:
		gemmPacked(kern, par, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// gemmScale sets C = beta * C, or C = 0 when beta == 0.
func gemmScale(par splitter, m, n int, beta float32, c []float32, ldc int) {
	t := gemmScaleTasks.get()
	*t = gemmScaleTask{n: n, beta: beta, c: c, ldc: ldc}
	par.run(m, max(1, gemmScaleGrain/n), t)
	gemmScaleTasks.put(t)
}

// gemmScaleTask scales rows of C by beta (zeroes them when beta == 0).
type gemmScaleTask struct {
	n, ldc int
	beta   float32
	c      []float32
}

var gemmScaleTasks taskPool[gemmScaleTask]

func (t *gemmScaleTask) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		row := t.c[i*t.ldc : i*t.ldc+t.n]
		if t.beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= t.beta
		}
	}
}

// gemmSplit cuts n items into the fewest parts of at most most items
// (most a multiple of unit) whose size is a multiple of unit and as even as
// possible: it returns the size of a part (the last may be smaller) and
// the number of parts.
func gemmSplit(n, most, unit int) (size, parts int) {
	size = roundUp(ceilDiv(n, ceilDiv(n, most)), unit)
	return size, ceilDiv(n, size)
}

// gemmPacked is the blocked GEMM for the general case (see the file
// comment), with kernel kern. C is cut into a grid of rectangles, one per
// part of par, each computed whole (every inner block, packing its own
// slices of A and B) by gemmRect: the parts never wait for one another.
func gemmPacked(kern *gemmKernel, par splitter, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmPackedRects(par, gemmRectTask{kern: kern, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc})
}

// gemmPackedLow is gemmPacked for C = alpha * A W^T + beta * C with W a
// low-precision matrix (n x k), widened as its panels are packed.
func gemmPackedLow(kern *gemmKernel, par splitter, m, n, k int, alpha float32, a []float32, lda int, w *lowMatrix, beta float32, c []float32, ldc int) {
	gemmPackedRects(par, gemmRectTask{kern: kern, transB: true, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, low: *w, c: c, ldc: ldc})
}

// gemmPackedRects runs p, whose grid it sets, split by par.
func gemmPackedRects(par splitter, p gemmRectTask) {
	p.rows, p.cols = gemmGrid(p.kern, min(par.width(), max(1, p.m*p.n*p.k/gemmMinWork)), p.m, p.n)
	t := gemmRectTasks.get()
	*t = p
	par.run(t.rows*t.cols, 1, t)
	gemmRectTasks.put(t)
}

// gemmGrid returns how many rows and columns of rectangles C is cut into
// for at most parts workers: the grid whose largest rectangle costs least,
// counting its multiply-adds per inner step and, at gemmPackCost each, the
// elements of A and B its worker packs per inner step (A is packed once
// per column of the grid, B once per row).
func gemmGrid(kern *gemmKernel, parts, m, n int) (rows, cols int) {
	rowSlivers, colSlivers := ceilDiv(m, kern.mr), ceilDiv(n, kern.nr)
	best := -1
	for r := 1; r <= min(parts, rowSlivers); r++ {
		c := min(parts/r, colSlivers)
		h, w := ceilDiv(rowSlivers, r)*kern.mr, ceilDiv(colSlivers, c)*kern.nr
		if cost := h*w + gemmPackCost*(h+w); best < 0 || cost < best {
			best, rows, cols = cost, r, c
		}
	}
	return rows, cols
}

// gemmRectTask computes C on a grid of rows x cols rectangles: part u is
// rectangle (u / cols, u % cols), cut in whole slivers of the kernel.
type gemmRectTask struct {
	kern           *gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	low            lowMatrix // op(B) when b is nil: low^T
	lda, ldb, ldc  int
	rows, cols     int
}

var gemmRectTasks taskPool[gemmRectTask]

func (t *gemmRectTask) run(lo, hi int) {
	mr, nr := t.kern.mr, t.kern.nr
	rowSlivers, colSlivers := ceilDiv(t.m, mr), ceilDiv(t.n, nr)
	for u := lo; u < hi; u++ {
		r, c := u/t.cols, u%t.cols
		i0, i1 := min(t.m, r*rowSlivers/t.rows*mr), min(t.m, (r+1)*rowSlivers/t.rows*mr)
		j0, j1 := min(t.n, c*colSlivers/t.cols*nr), min(t.n, (c+1)*colSlivers/t.cols*nr)
		if i0 < i1 && j0 < j1 {
			gemmRect(t.kern, t.transA, t.transB, i0, i1, j0, j1, t.k, t.alpha, t.a, t.lda, t.b, t.ldb, &t.low, t.beta, t.c, t.ldc)
		}
	}
}

// gemmRect computes rows [i0, i1) and columns [j0, j1) of C on the calling
// goroutine: for each panel of NC columns and each block of KC inner steps
// it packs the panel's slice of op(B), then, block of MC rows after block,
// the rows' slice of op(A), and multiplies them with gemmMacro. When b is
// nil, op(B) is low^T, widened into the packed panels.
func gemmRect(kern *gemmKernel, transA, transB bool, i0, i1, j0, j1, k int, alpha float32, a []float32, lda int, b []float32, ldb int, low *lowMatrix, beta float32, c []float32, ldc int) {
	mr, nr := kern.mr, kern.nr
	// Even row blocks, so that no block is a sliver or two.
	mc, _ := gemmSplit(i1-i0, kern.mc, mr)
	panel := min(k, kern.kc) * roundUp(min(j1-j0, kern.nc), nr)
	if b == nil {
		panel += nr * min(k, kern.kc) // the scratch of low.packB
	}
	bufB := gemmBuffer(&gemmPoolB, panel)
	bufA := gemmBuffer(&gemmPoolA, mc*min(k, kern.kc)+mr*nr)
	edge := (*bufA)[len(*bufA)-mr*nr:]
	for jp := j0; jp < j1; jp += kern.nc {
		nc := min(kern.nc, j1-jp)
		for p0 := 0; p0 < k; p0 += kern.kc {
			kc := min(kern.kc, k-p0)
			bp := (*bufB)[:roundUp(nc, nr)*kc]
			if b == nil {
				low.packB(bp, (*bufB)[len(*bufB)-nr*kc:], nr, p0, kc, jp, nc)
			} else {
				gemmPackB(bp, b, ldb, transB, nr, p0, kc, jp, nc)
			}
			// Blocks after the first add to what the first one stored.
			bet := beta
			if p0 > 0 {
				bet = 1
			}
			for ip := i0; ip < i1; ip += mc {
				h := min(mc, i1-ip)
				ap := (*bufA)[:roundUp(h, mr)*kc]
				gemmPackA(ap, a, lda, transA, mr, ip, h, p0, kc)
				gemmMacro(kern, kc, ap, bp, h, nc, c[ip*ldc+jp:], ldc, alpha, bet, edge)
			}
		}
	}
	gemmPoolA.Put(bufA)
	gemmPoolB.Put(bufB)
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int { return ceilDiv(n, m) * m }

// ceilDiv returns n / m rounded up, for n >= 0 and m > 0.
func ceilDiv(n, m int) int { return (n + m - 1) / m }

// gemmPackA packs rows [i0, i0+mc) and inner steps [p0, p0+kc) of op(A)
// into dst as slivers of mr rows: element (r, p) of sliver s goes to
// dst[s*mr*kc + p*mr + r]. Rows past mc are zero.
func gemmPackA(dst, a []float32, lda int, transA bool, mr, i0, mc, p0, kc int) {
	slivers := ceilDiv(mc, mr)
	if transA {
		// op(A)[i, p] = a[p*lda + i]: the rows of one step are adjacent.
		gemmPackRuns(dst, a[p0*lda+i0:], lda, mr, mc, kc)
		return
	}
	// op(A)[i, p] = a[i*lda + p]: the steps of one row are adjacent.
	for s := range slivers {
		i := i0 + s*mr
		gemmPackCols(dst[s*mr*kc:(s+1)*mr*kc], a[i*lda+p0:], lda, mr, min(mr, mc-s*mr), kc)
	}
}

// gemmPackB packs the panel of op(B) made of inner steps [p0, p0+kc) and
// columns [j0, j0+nc) into dst as slivers of nr columns: element (p, c) of sliver s goes to dst[s*nr*kc + p*nr + c].
// Columns past nc are zero.
func gemmPackB(dst, b []float32, ldb int, transB bool, nr, p0, kc, j0, nc int) {
	if !transB {
		// op(B)[p, j] = b[p*ldb + j]: the columns of one step are adjacent.
		gemmPackRuns(dst, b[p0*ldb+j0:], ldb, nr, nc, kc)
		return
	}
	// op(B)[p, j] = b[j*ldb + p]: the steps of one column are adjacent.
	for s := range ceilDiv(nc, nr) {
		j := j0 + s*nr
		gemmPackCols(dst[s*nr*kc:(s+1)*nr*kc], b[j*ldb+p0:], ldb, nr, min(nr, nc-s*nr), kc)
	}
}

// gemmPackRuns packs, in slivers of w columns, the kc x n matrix
// whose element (p, x) is src[p*ld + x]: element (p, c) of sliver s goes to
// dst[s*w*kc + p*w + c], and columns past n are zero. It goes eight rows
// at a time, sliver after sliver: the eight rows' runs of one sliver land
// together in dst, where copying one whole row at a time would write
// kc*w floats apart (the same cache set) at every run, and walking a
// sliver down all kc rows would touch a new page at every step.
func gemmPackRuns(dst, src []float32, ld, w, n, kc int) {
	full := n / w // slivers [0, full) have all w columns
	const rowsPer = 8
	for p0 := 0; p0 < kc; p0 += rowsPer {
		p1 := min(kc, p0+rowsPer)
		for s := range full {
			d, sp := dst[s*w*kc+p0*w:s*w*kc+p1*w], src[p0*ld+s*w:]
			if gemmPackRowsFast(d, sp, ld, w, p1-p0) {
				continue
			}
			for p := range p1 - p0 {
				copy(d[p*w:p*w+w], sp[p*ld:p*ld+w])
			}
		}
		if full*w < n {
			for p := p0; p < p1; p++ {
				dp := dst[full*w*kc+p*w : full*w*kc+p*w+w]
				clear(dp[copy(dp, src[p*ld+full*w:p*ld+n]):])
			}
		}
	}
}

// gemmPackCols sets d[p*w + x] = src[x*ld + p] for p < kc and x < n, and
// d[p*w + x] = 0 for n <= x < w: it transposes n runs of kc adjacent
// values. It goes eight steps at a time, so that the writes of all n runs
// land in the same few cache lines.
func gemmPackCols(d, src []float32, ld, w, n, kc int) {
	if gemmPackColsFast(d, src, ld, w, n, kc) {
		return
	}
	p := 0
	for ; p+8 <= kc; p += 8 {
		dp := d[p*w : (p+8)*w]
		for x := range n {
			s := src[x*ld+p : x*ld+p+8]
			dp[x] = s[0]
			dp[w+x] = s[1]
			dp[2*w+x] = s[2]
			dp[3*w+x] = s[3]
			dp[4*w+x] = s[4]
			dp[5*w+x] = s[5]
			dp[6*w+x] = s[6]
			dp[7*w+x] = s[7]
		}
		for q := range 8 {
			clear(dp[q*w+n : q*w+w])
		}
	}
	for ; p < kc; p++ {
		dp := d[p*w : p*w+w]
		for x := range n {
			dp[x] = src[x*ld+p]
		}
		clear(dp[n:])
	}
}

// gemmMacro multiplies a packed A block (mc rows) with a packed B panel
// (nc columns), updating C (c starts at the block's first row and the panel's first column):
// C = alpha * A B + beta * C. edge is scratch for one mr x nr tile: a tile
// that C cuts short goes through it, so that it gets the same arithmetic
// as a whole one.
func gemmMacro(kern *gemmKernel, kc int, ap, bp []float32, mc, nc int, c []float32, ldc int, alpha, beta float32, edge []float32) {
	mr, nr := kern.mr, kern.nr
	edge = edge[:mr*nr]
	for jr := 0; jr < nc; jr += nr {
		w := min(nr, nc-jr)
		bs := bp[jr*kc : (jr+nr)*kc]
		for ir := 0; ir < mc; ir += mr {
			h := min(mr, mc-ir)
			as := ap[ir*kc : (ir+mr)*kc]
			cc := c[ir*ldc+jr:]
			if h == mr && w == nr {
				// The SIMD kernels cannot check bounds: give them exactly
				// the span the tile covers.
				kern.tile(kc, as, bs, cc[:(mr-1)*ldc+nr], ldc, alpha, beta)
				continue
			}
			if beta != 0 {
				clear(edge)
				for i := range h {
					copy(edge[i*nr:i*nr+w], cc[i*ldc:i*ldc+w])
				}
			}
			kern.tile(kc, as, bs, edge, nr, alpha, beta)
			for i := range h {
				copy(cc[i*ldc:i*ldc+w], edge[i*nr:i*nr+w])
			}
		}
	}
}

// gemmKernel3x3 is the pure-Go micro-kernel (gemmKernel.tile with
// mr = nr = 3): with a a 3 x kc sliver of packed A and b a kc x 3 sliver of
// packed B, it sets the 3 x 3 tile at the start of c (row stride ldc) to
// alpha * a b + beta * tile (alpha * a b when beta == 0).
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
