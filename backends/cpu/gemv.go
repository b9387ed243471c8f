package cpu

// gemvMinWork is the number of multiply-adds worth handing to one goroutine
// in a matrix-vector product.
const gemvMinWork = 1 << 15

// gemv computes y = alpha * M x + beta * y for a rows x cols matrix M stored
// in mat with row stride ld (M[i][p] = mat[i*ld+p]), or stored transposed
// when trans (M[i][p] = mat[p*ld+i]); x has cols elements (cols >= 1) and
// y rows. With beta == 0 the old y is not read.
//
// Each output is accumulated in an order fixed by its index alone, so the
// result does not depend on how par splits the rows.
func gemv(par splitter, trans bool, rows, cols int, alpha float32, mat []float32, ld int, x []float32, beta float32, y []float32) {
	t := gemvTasks.get()
	*t = gemvTask{trans: trans, rows: rows, cols: cols, alpha: alpha, beta: beta, mat: mat, ld: ld, x: x, y: y}
	n, grain := t.split()
	par(n, grain, t)
	gemvTasks.put(t)
}

// gemvTask is a matrix-vector product y = alpha * M x + beta * y (see
// gemv) as work over its outputs: rows of M, or blocks of gemvBlock
// outputs when trans.
type gemvTask struct {
	trans       bool
	rows, cols  int
	alpha, beta float32
	mat         []float32
	ld          int
	x, y        []float32
}

var gemvTasks taskPool[gemvTask]

// split returns the number of work items and how many of them are worth
// a goroutine.
func (t *gemvTask) split() (n, grain int) {
	if t.trans {
		return (t.rows + gemvBlock - 1) / gemvBlock, max(1, gemvMinWork/(gemvBlock*t.cols))
	}
	return t.rows, max(1, gemvMinWork/t.cols)
}

func (t *gemvTask) run(lo, hi int) {
	mat, ld, cols, x, y := t.mat, t.ld, t.cols, t.x, t.y
	alpha, beta := t.alpha, t.beta
	if t.trans {
		for blk := lo; blk < hi; blk++ {
			i0 := blk * gemvBlock
			gemvColumns(mat, ld, x, i0, min(gemvBlock, t.rows-i0), alpha, beta, y[i0:])
		}
		return
	}
	i := lo
	for ; i+4 <= hi; i += 4 {
		s0, s1, s2, s3 := gemvDot4(mat[i*ld:i*ld+cols], mat[(i+1)*ld:(i+1)*ld+cols],
			mat[(i+2)*ld:(i+2)*ld+cols], mat[(i+3)*ld:(i+3)*ld+cols], x)
		out := y[i : i+4 : i+4]
		out[0] = gemvUpdate(out[0], s0, alpha, beta)
		out[1] = gemvUpdate(out[1], s1, alpha, beta)
		out[2] = gemvUpdate(out[2], s2, alpha, beta)
		out[3] = gemvUpdate(out[3], s3, alpha, beta)
	}
	for ; i < hi; i++ {
		y[i] = gemvUpdate(y[i], gemvDot(mat[i*ld:i*ld+cols], x), alpha, beta)
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
