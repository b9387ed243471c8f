package cuda

import (
	"math"

	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The fake device's models of retention.cu's factor kernels (the parallel
// scores, the decay mask, the scaled rows and the state decay), each
// following its CUDA C: the same arguments, indexing and double-precision
// factors, one element (or row) after another where the GPU runs them in
// parallel.

func init() {
	fakeKernels["ds_retention_parallel_scores_f32"] = fakeRetParallelScores
	fakeKernels["ds_retention_decay_mask_f32"] = fakeRetDecayMask
	fakeKernels["ds_retention_scale_rows_f32"] = fakeRetScaleRows
	fakeKernels["ds_retention_state_decay_f32"] = fakeRetStateDecay
}

// fakeRetS is ds_ret_s: s_p = (1 - gamma^(p+1)) / (1 - gamma).
func fakeRetS(p int64, logG, oneMinG float64) float64 {
	return -math.Expm1(float64(p+1)*logG) / oneMinG
}

// fakeRetGamma returns log gamma and 1 - gamma of head bh.
func fakeRetGamma(gamma []float32, bh int64) (logG, oneMinG float64) {
	return math.Log(float64(gamma[bh])), 1 - float64(gamma[bh])
}

// fakeRetParallelScores models ds_retention_parallel_scores_f32(A, den,
// gamma, T, rows): one row (a block on the GPU) at a time, the row's sum of
// absolute values in order (a block sum on the GPU).
func fakeRetParallelScores(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	T, rows := int64(a.i32(3)), a.i64(4)
	A, den, gamma := f.f32s(a.ptr(0), rows*T), f.f32s(a.ptr(1), rows), f.f32s(a.ptr(2), rows/T)
	for row := range rows {
		bh, n := row/T, row%T
		logG, oneMinG := fakeRetGamma(gamma, bh)
		rn := 1 / math.Sqrt(fakeRetS(n, logG, oneMinG))
		r := A[row*T : (row+1)*T]
		var sum float64
		for m := range n + 1 {
			v := float32(float64(r[m]) * math.Exp(float64(n-m)*logG) * rn)
			r[m] = v
			sum += math.Abs(float64(v))
		}
		d := sum // NaN stays NaN
		if d < 1 {
			d = 1
		}
		if d > 5e4 {
			d = 5e4
		}
		df := float32(d)
		for m := range T {
			if m <= n {
				r[m] /= df
			} else {
				r[m] = 0
			}
		}
		den[row] = df
	}
}

// fakeRetDecayMask models ds_retention_decay_mask_f32(A, den, gamma, L, p0,
// n).
func fakeRetDecayMask(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	L, p0, n := int64(a.i32(3)), a.i64(4), a.i64(5)
	LL := L * L
	A, den, gamma := f.f32s(a.ptr(0), n), f.f32s(a.ptr(1), n/L), f.f32s(a.ptr(2), n/LL)
	for e := range n {
		bh, i, j := e/LL, e%LL/L, e%L
		if j > i {
			A[e] = 0
			continue
		}
		logG, oneMinG := fakeRetGamma(gamma, bh)
		fi := 1 / math.Sqrt(fakeRetS(p0+i, logG, oneMinG))
		if den != nil {
			fi = fi / float64(den[bh*L+i])
		}
		A[e] = float32(float64(A[e]) * math.Exp(float64(i-j)*logG) * fi)
	}
}

// fakeRetScaleRows models ds_retention_scale_rows_f32(X, src, gamma, T, t0,
// L, width, offset, reads, n).
func fakeRetScaleRows(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	T, t0, L, width := int64(a.i32(3)), int64(a.i32(4)), int64(a.i32(5)), int64(a.i32(6))
	offset, reads, n := a.i64(7), a.i32(8) != 0, a.i64(9)
	heads := n / (L * width)
	X, gamma := f.f32s(a.ptr(0), n), f.f32s(a.ptr(2), heads)
	src := f.f32s(a.ptr(1), ((heads-1)*T+t0+L)*width)
	P0 := offset + t0
	for e := range n {
		bh, i, x := e/(L*width), e/width%L, e%width
		logG, oneMinG := fakeRetGamma(gamma, bh)
		var fi float64
		if reads {
			fi = math.Exp(float64(i+1)*logG) * math.Sqrt(fakeRetS(P0-1, logG, oneMinG)) * (1 / math.Sqrt(fakeRetS(P0+i, logG, oneMinG)))
		} else {
			fi = math.Exp(float64(L-1-i)*logG) * (1 / math.Sqrt(fakeRetS(P0+L-1, logG, oneMinG)))
		}
		X[e] = float32(fi * float64(src[(bh*T+t0+i)*width+x]))
	}
}

// fakeRetStateDecay models ds_retention_state_decay_f32(dst, src, gamma, L,
// p0, per, n).
func fakeRetStateDecay(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	L, p0, per, n := int64(a.i32(3)), a.i64(4), a.i64(5), a.i64(6)
	dst, src, gamma := f.f32s(a.ptr(0), n), f.f32s(a.ptr(1), n), f.f32s(a.ptr(2), n/per)
	for e := range n {
		logG, oneMinG := fakeRetGamma(gamma, e/per)
		decay := float32(math.Exp(float64(L)*logG) * math.Sqrt(fakeRetS(p0-1, logG, oneMinG)) * (1 / math.Sqrt(fakeRetS(p0+L-1, logG, oneMinG))))
		dst[e] = decay * src[e]
	}
}
