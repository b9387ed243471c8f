package cpu

// Matrix-vector products: the decode step's products of weights with one
// token's activations (or a few sequences' tokens), bound by the memory
// bandwidth rather than arithmetic. They skip the packing of the GEMM.
//
// The dot-product form (rows of a row-major matrix dotted with vectors, as
// for every weight stored [out, in]) runs on a gemvKernel chosen once at
// start-up by CPU features: on amd64, AVX2 with FMA (gemv_amd64.s); else,
// and with the purego build tag, the pure-Go kernel below. The transposed
// form (columns of the matrix) is pure Go.

const (
	// gemvMinWork is the number of multiply-adds worth handing to one
	// goroutine in a matrix-vector product.
	gemvMinWork = 1 << 15
	// gemvGroup is the number of matrix rows in a work item of the
	// dot-product form.
	gemvGroup = 8
	// gemvMaxBatch is the most rows of A for which sgemm computes
	// C = alpha A B^T + beta C with gemvBatch rather than the packed GEMM.
	// At 8 rows gemvBatch measured 2 to 5 times faster than the packed
	// GEMM (both with the AVX2 kernels, and both with the pure-Go ones) on
	// decode-sized weights.
	gemvMaxBatch = 8
)

// gemvKernel computes the dot-product form of gemv.
type gemvKernel struct {
	name      string // "generic" or "avx2"
	supported bool   // whether this CPU (and OS) can run it

	// dots computes work items [lo, hi) of t: for the rows of t's matrix
	// that t.rowsOf gives for each item, the dot products of the rows with
	// each of t's vectors, handed to t.store. Each dot product is summed
	// in an order fixed by the kernel alone: the rows and vectors computed
	// alongside and the split do not change it.
	dots func(t *gemvTask, lo, hi int)
}

// gemvGeneric is the pure-Go kernel, available everywhere.
var gemvGeneric = &gemvKernel{name: "generic", supported: true, dots: gemvDotsGo}

// gemvKernels lists every kernel compiled in, best first; the generic one
// is last. gemvArchKernels comes from the architecture's file.
var gemvKernels = append(gemvArchKernels[:len(gemvArchKernels):len(gemvArchKernels)], gemvGeneric)

// gemvBest is the kernel gemv and gemvBatch use: the first supported one.
var gemvBest = func() *gemvKernel {
	for _, k := range gemvKernels {
		if k.supported {
			return k
		}
	}
	return gemvGeneric
}()

// gemv computes y = alpha * M x + beta * y for a rows x cols matrix M stored
// in mat with row stride ld (M[i][p] = mat[i*ld+p]), or stored transposed
// when trans (M[i][p] = mat[p*ld+i]); x has cols elements (cols >= 1) and
// y rows. With beta == 0 the old y is not read.
//
// Each output is accumulated in an order fixed by its index alone, so the
// result does not depend on how par splits the rows.
func gemv(par splitter, trans bool, rows, cols int, alpha float32, mat []float32, ld int, x []float32, beta float32, y []float32) {
	gemvWith(gemvBest, par, trans, rows, cols, alpha, mat, ld, x, 0, 1, beta, y, 0)
}

// gemvBatch is gemv in dot-product form for nx vectors at once, the matrix
// read from memory once for all of them: for i < nx, the rows outputs at
// y[i*ldy:] are set to alpha * M x_i + beta * (their old value), with
// x_i = x[i*ldx : i*ldx+cols]. In sgemm's terms, C = alpha A B^T + beta C
// for the nx rows of A, with B the matrix. Each output is summed exactly
// as gemv sums it for x_i alone.
func gemvBatch(par splitter, rows, cols int, alpha float32, mat []float32, ld int, x []float32, ldx, nx int, beta float32, y []float32, ldy int) {
	gemvWith(gemvBest, par, false, rows, cols, alpha, mat, ld, x, ldx, nx, beta, y, ldy)
}

// gemvWith is gemv (nx == 1) or gemvBatch with the dot-product kernel
// given, which must be supported; tests use it to run every kernel. The
// transposed form takes one vector only.
func gemvWith(kern *gemvKernel, par splitter, trans bool, rows, cols int, alpha float32, mat []float32, ld int, x []float32, ldx, nx int, beta float32, y []float32, ldy int) {
	t := gemvTasks.get()
	*t = gemvTask{kern: kern, trans: trans, rows: rows, cols: cols, alpha: alpha, beta: beta,
		mat: mat, ld: ld, x: x, ldx: ldx, nx: nx, y: y, ldy: ldy}
	n, grain := t.split()
	par.run(n, grain, t)
	gemvTasks.put(t)
}

// gemvTask is a matrix-vector product (see gemvWith) as work over its
// outputs: items of gemvGroup rows of the matrix (see rowsOf), or blocks of
// gemvBlock outputs when trans.
type gemvTask struct {
	kern        *gemvKernel
	trans       bool
	rows, cols  int
	alpha, beta float32
	mat         []float32
	ld          int
	x           []float32
	ldx, nx     int
	y           []float32
	ldy         int
}

var gemvTasks taskPool[gemvTask]

// split returns the number of work items and how many of them are worth
// a goroutine.
func (t *gemvTask) split() (n, grain int) {
	if t.trans {
		return ceilDiv(t.rows, gemvBlock), max(1, gemvMinWork/(gemvBlock*t.cols))
	}
	return ceilDiv(t.rows, gemvGroup), max(1, gemvMinWork/(gemvGroup*t.cols))
}

func (t *gemvTask) run(lo, hi int) {
	if !t.trans {
		t.kern.dots(t, lo, hi)
		return
	}
	for blk := lo; blk < hi; blk++ {
		i0 := blk * gemvBlock
		gemvColumns(t.mat, t.ld, t.x, i0, min(gemvBlock, t.rows-i0), t.alpha, t.beta, t.y[i0:])
	}
}

// rowsOf returns the matrix rows of work item g of the dot-product form:
// the n rows j, j+stride, ..., j+(n-1)*stride. The first gemvGroup * b
// rows (b = rows / gemvGroup) form gemvGroup bands of b rows, and item
// g < b takes row g of every band: a kernel going through consecutive
// items then reads gemvGroup long sequential streams, which the hardware
// prefetcher follows better than the short runs of a few adjacent rows
// (a row of a decode weight is a few KiB). The last item takes the
// rows % gemvGroup rows left, adjacent.
func (t *gemvTask) rowsOf(g int) (j, stride, n int) { return gemvRowsOf(t.rows, g) }

// gemvRowsOf is gemvTask.rowsOf for a matrix of the given rows.
func gemvRowsOf(rows, g int) (j, stride, n int) {
	b := rows / gemvGroup
	if g < b {
		return g, b, gemvGroup
	}
	return gemvGroup * b, 1, rows - gemvGroup*b
}

// store sets the outputs of vector i for the matrix rows j, j+stride, ...
// from their dot products s.
func (t *gemvTask) store(i, j, stride int, s []float32) {
	out := t.y[i*t.ldy+j:]
	if t.beta == 0 { // old values are not read: they may be far from cache
		for r, v := range s {
			out[r*stride] = t.alpha * v
		}
		return
	}
	for r, v := range s {
		out[r*stride] = gemvUpdate(out[r*stride], v, t.alpha, t.beta)
	}
}

// gemvDotsGo is gemvKernel.dots in pure Go: gemvDot4 for four rows at a
// time, gemvDot (which sums each row the same way) for the rest.
func gemvDotsGo(t *gemvTask, lo, hi int) {
	mat, ld, k := t.mat, t.ld, t.cols
	var s [gemvGroup]float32
	for g := lo; g < hi; g++ {
		j, stride, n := t.rowsOf(g)
		d := stride * ld // from one row of the item to the next
		for i := range t.nx {
			x := t.x[i*t.ldx:][:k]
			r := 0
			for ; r+4 <= n; r += 4 {
				a := (j + r*stride) * ld
				s[r], s[r+1], s[r+2], s[r+3] = gemvDot4(mat[a:a+k], mat[a+d:a+d+k], mat[a+2*d:a+2*d+k], mat[a+3*d:a+3*d+k], x)
			}
			for ; r < n; r++ {
				a := (j + r*stride) * ld
				s[r] = gemvDot(mat[a:a+k], x)
			}
			t.store(i, j, stride, s[:n])
		}
	}
}

// gemvUpdate returns alpha*s + beta*old, or alpha*s when beta == 0.
func gemvUpdate(old, s, alpha, beta float32) float32 {
	if beta == 0 {
		return alpha * s
	}
	return alpha*s + beta*old
}

// gemvDot returns the dot product of r and x (len(r) == len(x)), summed
// exactly as each row of gemvDot4 is: groups of four products added
// pairwise, then into the running sum.
func gemvDot(r, x []float32) float32 {
	r = r[:len(x)]
	var s float32
	k := 0
	for ; k+4 <= len(x); k += 4 {
		xx := x[k : k+4 : k+4]
		rr := r[k : k+4 : k+4]
		s += (rr[0]*xx[0] + rr[1]*xx[1]) + (rr[2]*xx[2] + rr[3]*xx[3])
	}
	for ; k < len(x); k++ {
		s += r[k] * x[k]
	}
	return s
}

// gemvDot4 returns the dot products of four rows with x, sharing the loads
// of x. Each sum is computed exactly as gemvDot computes it.
func gemvDot4(r0, r1, r2, r3, x []float32) (s0, s1, s2, s3 float32) {
	n := len(x)
	r0, r1, r2, r3 = r0[:n], r1[:n], r2[:n], r3[:n]
	k := 0
	for ; k+4 <= n; k += 4 {
		xx := x[k : k+4 : k+4]
		x0, x1, x2, x3 := xx[0], xx[1], xx[2], xx[3]
		rr := r0[k : k+4 : k+4]
		s0 += (rr[0]*x0 + rr[1]*x1) + (rr[2]*x2 + rr[3]*x3)
		rr = r1[k : k+4 : k+4]
		s1 += (rr[0]*x0 + rr[1]*x1) + (rr[2]*x2 + rr[3]*x3)
		rr = r2[k : k+4 : k+4]
		s2 += (rr[0]*x0 + rr[1]*x1) + (rr[2]*x2 + rr[3]*x3)
		rr = r3[k : k+4 : k+4]
		s3 += (rr[0]*x0 + rr[1]*x1) + (rr[2]*x2 + rr[3]*x3)
	}
	for ; k < n; k++ {
		xk := x[k]
		s0 += r0[k] * xk
		s1 += r1[k] * xk
		s2 += r2[k] * xk
		s3 += r3[k] * xk
	}
	return s0, s1, s2, s3
}

// gemvColumns computes outputs [i0, i0+w) of a transposed matrix-vector
// product (w <= gemvBlock): y[i] = alpha * sum_p mat[p*ld + i0 + i] x[p] +
// beta * y[i], accumulating the block on the stack four rows of mat at a
// time.
func gemvColumns(mat []float32, ld int, x []float32, i0, w int, alpha, beta float32, y []float32) {
	var buf [gemvBlock]float32
	acc := buf[:w]
	p := 0
	for ; p+4 <= len(x); p += 4 {
		xx := x[p : p+4 : p+4]
		x0, x1, x2, x3 := xx[0], xx[1], xx[2], xx[3]
		m0 := mat[p*ld+i0 : p*ld+i0+w]
		m1 := mat[(p+1)*ld+i0 : (p+1)*ld+i0+w]
		m2 := mat[(p+2)*ld+i0 : (p+2)*ld+i0+w]
		m3 := mat[(p+3)*ld+i0 : (p+3)*ld+i0+w]
		m0, m1, m2, m3 = m0[:len(acc)], m1[:len(acc)], m2[:len(acc)], m3[:len(acc)]
		for i := range acc {
			acc[i] += (m0[i]*x0 + m1[i]*x1) + (m2[i]*x2 + m3[i]*x3)
		}
	}
	for ; p < len(x); p++ {
		xp := x[p]
		row := mat[p*ld+i0 : p*ld+i0+w][:len(acc)]
		for i := range acc {
			acc[i] += row[i] * xp
		}
	}
	out := y[:w]
	for i, s := range acc {
		out[i] = gemvUpdate(out[i], s, alpha, beta)
	}
}
