//go:build amd64 && !purego

package cpu

import xcpu "golang.org/x/sys/cpu"

// gemvArchKernels holds the dot-product kernel of gemv_amd64.s, in AVX2 and
// FMA3. Build with the purego tag to leave it out and use the pure-Go
// kernel only.
//
// Decoding is bound by the memory bandwidth. For one vector the kernel
// reads the eight rows of a work item (one from each band of
// gemvTask.rowsOf: eight sequential streams) at once, with 8-wide FMAs into
// one accumulator per row; for a batch it takes four rows and up to three
// vectors at a time, sharing each load of a row among the vectors, so that
// a batch of up to gemvMaxBatch vectors reads the matrix from memory once
// (the four rows stay in L1 or L2 between passes of three vectors).
var gemvArchKernels = []*gemvKernel{
	{
		name: "avx2", supported: xcpu.X86.HasAVX2 && xcpu.X86.HasFMA,
		dots: gemvDotsAVX2,
	},
}

// gemvDot8x1AVX2 sets out[r] to the dot product of the k floats of row r,
// at w + r*ldw, with the vector at x, for r < 8. See gemv_amd64.s for the
// summation order, which all the kernels share.
//
//go:noescape
func gemvDot8x1AVX2(k int, w *float32, ldw int, x, out *float32)

// gemvDot4x1AVX2 sets out[r] to the dot product of the k floats of row wr
// with the vector at x, for r < 4 (ldx is unused).
//
//go:noescape
func gemvDot4x1AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)

// gemvDot4x2AVX2 sets out[i*4+r] to the dot product of row wr with vector
// i, at x + i*ldx, for two vectors.
//
//go:noescape
func gemvDot4x2AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)

// gemvDot4x3AVX2 is gemvDot4x2AVX2 for three vectors.
//
//go:noescape
func gemvDot4x3AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)

// gemvDotsAVX2 is gemvKernel.dots with the assembly kernels: the eight
// rows of an item at once for one vector, else four rows and three vectors
// at a time. A set of four rows cut short by the end of the item repeats
// its last row, so that every output goes through the same arithmetic.
func gemvDotsAVX2(t *gemvTask, lo, hi int) {
	ld, k, ldx := t.ld, t.cols, t.ldx
	var s [3 * 4]float32
	for g := lo; g < hi; g++ {
		j, stride, n := t.rowsOf(g)
		d := stride * ld // from one row of the item to the next
		// The kernels cannot check bounds: this slice, from the item's
		// first row to the end of its last, does.
		w := t.mat[j*ld : (n-1)*d+j*ld+k]
		if t.nx == 1 && n == 8 {
			gemvDot8x1AVX2(k, &w[0], d, &t.x[:k][0], &s[0])
			t.store(0, j, stride, s[:8])
			continue
		}
		for r0 := 0; r0 < n; r0 += 4 {
			last := min(4, n-r0) - 1
			w0, w1, w2, w3 := &w[r0*d], &w[(r0+min(1, last))*d], &w[(r0+min(2, last))*d], &w[(r0+last)*d]
			for i := 0; i < t.nx; i += 3 {
				m := min(3, t.nx-i)
				x := t.x[i*ldx : (i+m-1)*ldx+k]
				switch m {
				case 1:
					gemvDot4x1AVX2(k, w0, w1, w2, w3, &x[0], ldx, &s[0])
				case 2:
					gemvDot4x2AVX2(k, w0, w1, w2, w3, &x[0], ldx, &s[0])
				default:
					gemvDot4x3AVX2(k, w0, w1, w2, w3, &x[0], ldx, &s[0])
				}
				for q := range m {
					t.store(i+q, j+r0*stride, stride, s[q*4:q*4+last+1])
				}
			}
		}
	}
}
