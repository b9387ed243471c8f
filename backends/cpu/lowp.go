package cpu

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// Low-precision weights: BF16 and Q8_0 matrices as the second operand of
// MatMul (x W^T, W stored [out, in], the product of every Linear) and as
// the table of Gather (embeddings). The products accumulate in float32:
// decoding (a few rows of x) streams the low-precision rows through the
// lowDots kernels, which widen each element as they go; longer products
// widen W into the packed panels of the float32 GEMM (gemmRect), where
// the cost is shared by every row of x.

// lowMatrix is a rows x cols matrix of BF16 or Q8_0 elements stored
// row-major in raw (a Q8_0 row is cols/32 whole blocks).
type lowMatrix struct {
	dtype      api.DType
	rows, cols int
	rowBytes   int
	raw        []byte
}

// newLowMatrix returns the rows x cols matrix t stores; t's last axis is
// cols and its elements are rows*cols. It is a value, so that the tasks
// of the decode path hold it without an allocation.
func newLowMatrix(t *Tensor, rows, cols int) lowMatrix {
	return lowMatrix{dtype: t.dtype, rows: rows, cols: cols, rowBytes: t.dtype.Bytes(cols), raw: t.raw}
}

// isLow reports whether d is a dtype MatMul and Gather read as low-precision
// weights.
func isLow(d api.DType) bool { return d == api.BF16 || d == api.Q8_0 }

// row returns the storage of row j.
func (m *lowMatrix) row(j int) []byte { return m.raw[j*m.rowBytes : (j+1)*m.rowBytes] }

// widen sets dst to elements [p0, p0+len(dst)) of row j as float32.
func (m *lowMatrix) widen(dst []float32, j, p0 int) {
	r := m.row(j)
	if m.dtype == api.BF16 {
		n := widenArch(dst, api.BF16, r[2*p0:])
		widenBF16(dst[n:], r[2*(p0+n):2*(p0+len(dst))])
		return
	}
	if p0%api.Q8Block == 0 {
		n := widenArch(dst, api.Q8_0, r[p0/api.Q8Block*api.Q8BlockBytes:])
		dst, p0 = dst[n:], p0+n
	}
	for len(dst) > 0 {
		blk, i := p0/api.Q8Block, p0%api.Q8Block
		b := r[blk*api.Q8BlockBytes : (blk+1)*api.Q8BlockBytes]
		d := api.Float16ToFloat32(binary.LittleEndian.Uint16(b))
		n := min(len(dst), api.Q8Block-i)
		for x, q := range b[2+i : 2+i+n] {
			dst[x] = d * float32(int8(q))
		}
		dst, p0 = dst[n:], p0+n
	}
}

// widenBF16 sets dst to the len(dst) bfloat16 values in src.
func widenBF16(dst []float32, src []byte) {
	for i, h := range bf16Row(src, len(dst)) {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// bf16Row returns the first n bfloat16 values stored in b (2n bytes or
// more) as a slice aliasing b.
func bf16Row(b []byte, n int) []uint16 {
	if n == 0 {
		return nil
	}
	_ = b[2*n-1]
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// packB is gemmPackB for op(B) = m^T (transB): it packs inner steps
// [p0, p0+kc) of columns [j0, j0+nc) of op(B) (rows of m) into dst in
// slivers of nr, widening each sliver's rows into scratch (nr*kc floats)
// first.
func (m *lowMatrix) packB(dst, scratch []float32, nr, p0, kc, j0, nc int) {
	for s := range ceilDiv(nc, nr) {
		j, n := j0+s*nr, min(nr, nc-s*nr)
		for r := range n {
			m.widen(scratch[r*kc:(r+1)*kc], j+r, p0)
		}
		gemmPackCols(dst[s*nr*kc:(s+1)*nr*kc], scratch, kc, nr, n, kc)
	}
}

// matmulLow is MatMul for a low-precision second operand: dst [m, n] =
// alpha * a [m, k] w^T + beta * dst with w [n, k] in BF16 or Q8_0.
func (b *Backend) matmulLow(m, n, k int, alpha float32, a []float32, w lowMatrix, beta float32, c []float32) {
	switch {
	case m == 0 || n == 0:
	case k == 0 || alpha == 0:
		gemmScale(b, m, n, beta, c, n)
	case m <= gemvMaxBatch:
		lowGemv(lowDotsBest, b, &w, alpha, a, k, m, beta, c, n)
	default:
		gemmPackedLow(gemmBest, b, m, n, k, alpha, a, k, &w, beta, c, n)
	}
}

// lowDots is a kernel of lowGemv: the dot products of four or eight rows
// of a low-precision matrix with one vector (also two, for four BF16
// rows).
type lowDots struct {
	name      string // "generic" or "avx2"
	supported bool
	arch      bool // lowDotArch, else lowDotGo
}

// lowDotsGeneric is the pure-Go kernel.
var lowDotsGeneric = &lowDots{name: "generic", supported: true}

// lowDotsBest is the first supported kernel of lowDotsArch, else the
// generic one.
var lowDotsBest = func() *lowDots {
	for _, k := range lowDotsArch {
		if k.supported {
			return k
		}
	}
	return lowDotsGeneric
}()

// lowRows are the rows of one call of a lowDots kernel: n (4 or 8) rows
// j, j+stride, ..., of which the first four may instead be listed in at
// (a set of four cut short repeats its last row).
type lowRows struct {
	n, j, stride int
	at           *[4]int // when not nil: the four rows, n == 4
}

// row returns the r-th row.
func (rs *lowRows) row(r int) int {
	if rs.at != nil {
		return rs.at[r]
	}
	return rs.j + r*rs.stride
}

// lowVec is a vector of a low-precision product: its floats, and for
// Q8_0 matrices the same quantized to 16 bits per block of Q8Block
// (quantizeQ16).
type lowVec struct {
	f []float32
	q []int16
	d []float32
}

// quantizeQ16 sets q and d to x quantized per block of Q8Block (x's
// length is a multiple of it): d[b] = max|x| / 32767 over block b, and
// q[i] = x[i] * (1/d) rounded to the nearest integer, ties to even (0 for
// a block of zeros). The values are within 1/65534 of the block's largest
// magnitude: far below the 8-bit weights' error, where llama.cpp's q8_0
// products round the vector to 8 bits. The assembly kernel computes the
// same bits.
func quantizeQ16(q []int16, d []float32, x []float32) {
	if quantizeQ16Arch(q, d, x) {
		return
	}
	quantizeQ16Go(q, d, x)
}

// quantizeQ16Go is quantizeQ16 in Go.
func quantizeQ16Go(q []int16, d []float32, x []float32) {
	for b := range d {
		xs := x[b*api.Q8Block : (b+1)*api.Q8Block]
		var amax float32
		for _, v := range xs {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		scale := amax / 32767
		var inv float32
		if scale != 0 {
			inv = 1 / scale
		}
		d[b] = scale
		qs := q[b*api.Q8Block : (b+1)*api.Q8Block]
		for i, v := range xs {
			qs[i] = int16(math.RoundToEven(float64(v * inv)))
		}
	}
}

// dot sets out[i*rs.n+r] to the dot product of row r of rs with vector
// v[i], for the len(v) vectors (one; two only for four BF16 rows). (A
// direct call, not a function value, lets the arguments stay on the
// caller's stack.)
func (k *lowDots) dot(m *lowMatrix, rs *lowRows, v []lowVec, out *[8]float32) {
	if k.arch {
		lowDotArch(m, rs, v, out)
		return
	}
	lowDotGo(m, rs, v, out)
}

// lowDotGo is lowDots.dot in pure Go, summing as the AVX2 kernels do (see
// lowp_amd64.s) but for the fusing of multiplies and adds.
func lowDotGo(m *lowMatrix, rs *lowRows, v []lowVec, out *[8]float32) {
	k := m.cols
	for r := range rs.n {
		row := m.row(rs.row(r))
		for i, x := range v {
			var acc [8]float32
			if m.dtype == api.Q8_0 {
				for blk := range k / api.Q8Block {
					b := row[blk*api.Q8BlockBytes : (blk+1)*api.Q8BlockBytes]
					xq := x.q[blk*api.Q8Block : (blk+1)*api.Q8Block]
					scale := api.Float16ToFloat32(binary.LittleEndian.Uint16(b)) * x.d[blk]
					for l := range acc {
						s := int32(int8(b[2+2*l]))*int32(xq[2*l]) + int32(int8(b[3+2*l]))*int32(xq[2*l+1]) +
							int32(int8(b[18+2*l]))*int32(xq[16+2*l]) + int32(int8(b[19+2*l]))*int32(xq[17+2*l])
						acc[l] += float32(s) * scale
					}
				}
			} else {
				for p, h := range bf16Row(row, k) {
					acc[p%8] += math.Float32frombits(uint32(h)<<16) * x.f[p]
				}
			}
			out[i*rs.n+r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
		}
	}
}

// lowGemv sets y[i*ldy+j] = alpha * (row j of w) . x_i + beta * y[i*ldy+j]
// for the nx vectors x_i = x[i*ldx:][:w.cols], reading w from memory once
// for all of them; par splits the rows in items of gemvGroup (gemvRowsOf).
func lowGemv(kern *lowDots, par splitter, w *lowMatrix, alpha float32, x []float32, ldx, nx int, beta float32, y []float32, ldy int) {
	k := w.cols
	sc := lowScratches.Get().(*lowScratch)
	if w.dtype == api.Q8_0 {
		sc.q = slices.Grow(sc.q[:0], nx*k)[:nx*k]
		sc.d = slices.Grow(sc.d[:0], nx*k/api.Q8Block)[:nx*k/api.Q8Block]
	}
	vecs := sc.vecs[:0]
	for i := range nx {
		v := lowVec{f: x[i*ldx : i*ldx+k]}
		if w.dtype == api.Q8_0 {
			v.q, v.d = sc.q[i*k:(i+1)*k], sc.d[i*k/api.Q8Block:(i+1)*k/api.Q8Block]
			quantizeQ16(v.q, v.d, v.f)
		}
		vecs = append(vecs, v)
	}
	t := lowGemvTasks.get()
	*t = lowGemvTask{kern: kern, w: *w, alpha: alpha, beta: beta, vecs: vecs, y: y, ldy: ldy}
	par.run(ceilDiv(w.rows, gemvGroup), max(1, gemvMinWork/(gemvGroup*max(k, 1))), t)
	lowGemvTasks.put(t)
	clear(vecs) // keep no vector alive in the pool
	sc.vecs = vecs[:0]
	lowScratches.Put(sc)
}

// lowScratch holds the vectors of a lowGemv and their 16-bit forms,
// recycled through lowScratches so that decoding allocates nothing.
type lowScratch struct {
	vecs []lowVec
	q    []int16
	d    []float32
}

var lowScratches = sync.Pool{New: func() any { return new(lowScratch) }}

// lowGemvTask is a lowGemv as work over items of gemvGroup rows.
type lowGemvTask struct {
	kern        *lowDots
	w           lowMatrix
	alpha, beta float32
	vecs        []lowVec
	y           []float32
	ldy         int
}

var lowGemvTasks taskPool[lowGemvTask]

func (t *lowGemvTask) run(lo, hi int) {
	var at [4]int
	var s [8]float32
	pairs := t.w.dtype == api.BF16 // four BF16 rows take two vectors at a time
	for g := lo; g < hi; g++ {
		j, stride, n := gemvRowsOf(t.w.rows, g)
		if n == gemvGroup && (len(t.vecs) == 1 || !pairs) {
			rs := lowRows{n: 8, j: j, stride: stride}
			for i := range t.vecs {
				t.kern.dot(&t.w, &rs, t.vecs[i:i+1], &s)
				t.store(i, &rs, s[:8])
			}
			continue
		}
		for r0 := 0; r0 < n; r0 += 4 {
			last := min(4, n-r0) - 1
			for r := range at {
				at[r] = j + (r0+min(r, last))*stride
			}
			rs := lowRows{n: 4, at: &at}
			step := 1
			if pairs {
				step = 2
			}
			for i := 0; i < len(t.vecs); i += step {
				v := t.vecs[i:min(i+step, len(t.vecs))]
				t.kern.dot(&t.w, &rs, v, &s)
				for q := range v {
					t.store(i+q, &rs, s[q*4:q*4+last+1])
				}
			}
		}
	}
}

// store updates the outputs of vector i for the rows of rs from their dot
// products s (one per row, fewer when the set was cut short).
func (t *lowGemvTask) store(i int, rs *lowRows, s []float32) {
	out := t.y[i*t.ldy:]
	if t.beta == 0 { // old values are not read: they may be far from cache
		for r, v := range s {
			out[rs.row(r)] = t.alpha * v
		}
		return
	}
	for r, v := range s {
		o := &out[rs.row(r)]
		*o = gemvUpdate(*o, v, t.alpha, t.beta)
	}
}
