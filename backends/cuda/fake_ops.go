package cuda

import (
	"encoding/binary"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The fake device's models of softmax.cu's gradient kernels, conv.cu's
// CausalConv1dGrad kernels, convert.cu's Q8_0 and I64-to-I32 conversions
// and layout.cu's ds_gather_q8_0, each after its CUDA C (see fakeDevice).

func init() {
	fakeKernels["ds_softmax_grad_f32"] = func(f *fakeDevice, g kernels.Geometry, a fakeArgs) { fakeSoftmaxGrad(f, g, a, false) }
	fakeKernels["ds_log_softmax_grad_f32"] = func(f *fakeDevice, g kernels.Geometry, a fakeArgs) { fakeSoftmaxGrad(f, g, a, true) }
	fakeKernels["ds_causal_conv1d_grad_x_f32"] = fakeConvGradX
	fakeKernels["ds_causal_conv1d_grad_w_f32"] = fakeConvGradW
	fakeKernels["ds_convert_i64_i32"] = fakeConvertI64I32
	fakeKernels["ds_convert_q8_0_f32"] = fakeDequantizeQ8
	fakeKernels["ds_convert_f32_q8_0"] = fakeQuantizeQ8
	fakeKernels["ds_gather_q8_0"] = fakeGatherQ8
}

// fakeSetFlag is the kernels' atomicCAS(bad, 0, i + 1): the first bad
// index stays.
func fakeSetFlag(bad []byte, i int64) {
	if binary.LittleEndian.Uint64(bad) == 0 {
		binary.LittleEndian.PutUint64(bad, uint64(i)+1)
	}
}

// fakeSoftmaxGrad models ds_softmax_grad_f32 (dx = y (dy - y.dy)) and,
// when log is set, ds_log_softmax_grad_f32 (dx = dy - exp(y) sum(dy)):
// arguments (dx, y, dy, V), a row a block; the row's sum in double, in
// order (the GPU's is per thread, then a tree).
func fakeSoftmaxGrad(f *fakeDevice, g kernels.Geometry, a fakeArgs, log bool) {
	rows, V := int64(g.Grid.X), int64(a.i32(3))
	dx, y, dy := f.f32s(a.ptr(0), rows*V), f.f32s(a.ptr(1), rows*V), f.f32s(a.ptr(2), rows*V)
	for r := range rows {
		yr, gr, dr := y[r*V:(r+1)*V], dy[r*V:(r+1)*V], dx[r*V:(r+1)*V]
		var s float64
		for j := range yr {
			if log {
				s += float64(gr[j])
			} else {
				s += float64(yr[j]) * float64(gr[j])
			}
		}
		for j := range yr {
			if log {
				dr[j] = float32(float64(gr[j]) - float64(math.Exp(float64(yr[j]))*s)) // no fused multiply-add
			} else {
				dr[j] = float32(float64(yr[j]) * (float64(gr[j]) - s))
			}
		}
	}
}

// fakeConvGradX models ds_causal_conv1d_grad_x_f32 (dx, dprev, w, dy, B, T,
// C, K): an element of xx = prev followed by x at a time.
func fakeConvGradX(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	B, T, C, K := int64(a.i32(4)), int64(a.i32(5)), int64(a.i32(6)), int64(a.i32(7))
	dx, dprev := f.f32s(a.ptr(0), B*T*C), f.f32s(a.ptr(1), B*(K-1)*C)
	w, dy := f.f32s(a.ptr(2), C*K), f.f32s(a.ptr(3), B*T*C)
	rows := T + K - 1
	for e := range B * rows * C {
		r, c := e/C, e%C
		b, i := r/rows, r%rows
		var out *float32
		switch {
		case i >= K-1 && dx != nil:
			out = &dx[(b*T+i-(K-1))*C+c]
		case i < K-1 && dprev != nil:
			out = &dprev[(b*(K-1)+i)*C+c]
		default:
			continue
		}
		var acc float32
		for k := range K {
			t := i - k
			if t < 0 || t >= T {
				continue
			}
			acc += float32(w[c*K+k] * dy[(b*T+t)*C+c])
		}
		*out = acc
	}
}

// fakeConvGradW models ds_causal_conv1d_grad_w_f32 (dw, dbias, x, prev,
// dy, B, T, C, K) block by block, with the kernel's order of sums: thread
// row ty sums the time steps ty, ty + ConvGradRows, ... in double, and the
// rows are added by halving.
func fakeConvGradW(f *fakeDevice, g kernels.Geometry, a fakeArgs) {
	B, T, C, K := int64(a.i32(5)), int64(a.i32(6)), int64(a.i32(7)), int64(a.i32(8))
	dw, dbias := f.f32s(a.ptr(0), C*K), f.f32s(a.ptr(1), C)
	x, prev, dy := f.f32s(a.ptr(2), B*T*C), f.f32s(a.ptr(3), B*(K-1)*C), f.f32s(a.ptr(4), B*T*C)
	const R = kernels.ConvGradRows
	BT := B * T
	for k := range int64(g.Grid.Y) {
		if (k == K && dbias == nil) || (k < K && dw == nil) {
			continue
		}
		for c := range C {
			var part [R]float64
			for ty := range int64(R) {
				var acc float64
				for r := ty; r < BT; r += R {
					gv := float64(dy[r*C+c])
					if k == K {
						acc += gv
						continue
					}
					b := r / T
					s := r - b*T + k
					var v float32
					switch {
					case s >= K-1:
						v = x[(b*T+s-(K-1))*C+c]
					case prev != nil:
						v = prev[(b*(K-1)+s)*C+c]
					default:
						continue
					}
					acc += gv * float64(v)
				}
				part[ty] = acc
			}
			for h := R / 2; h > 0; h /= 2 {
				for ty := range h {
					part[ty] += part[ty+h]
				}
			}
			if k == K {
				dbias[c] = float32(part[0])
			} else {
				dw[c*K+k] = float32(part[0])
			}
		}
	}
}

// fakeConvertI64I32 models ds_convert_i64_i32 (dst, src, n, bad).
func fakeConvertI64I32(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	n := a.i64(2)
	dst, raw, bad := f.i32s(a.ptr(0), n), f.span(a.ptr(1), 8*n), f.span(a.ptr(3), 8)
	for i := range n {
		v := int64(binary.LittleEndian.Uint64(raw[8*i:]))
		if v < math.MinInt32 || v > math.MaxInt32 {
			fakeSetFlag(bad, i)
			continue
		}
		dst[i] = int32(v)
	}
}

// q8Value is common.cuh's ds_q8_value: element i of the Q8_0 blocks in q.
func q8Value(q []byte, i int64) float32 {
	blk := q[i/api.Q8Block*api.Q8BlockBytes:]
	d := api.Float16ToFloat32(binary.LittleEndian.Uint16(blk)) // PTX cvt.f32.f16
	return d * float32(int8(blk[2+i%api.Q8Block]))
}

// fakeDequantizeQ8 models ds_convert_q8_0_f32 (dst, src, n).
func fakeDequantizeQ8(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	n := a.i64(2)
	dst, src := f.f32s(a.ptr(0), n), f.span(a.ptr(1), int64(api.Q8_0.Bytes(int(n))))
	for i := range n {
		dst[i] = q8Value(src, i)
	}
}

// fmaxf is CUDA's fmaxf: the larger of a and b, the other when one is a
// NaN.
func fmaxf(a, b float32) float32 {
	switch {
	case a != a:
		return b
	case b != b:
		return a
	}
	return max(a, b)
}

// fakeQuantizeQ8 models ds_convert_f32_q8_0 (dst, src, n), a block (a
// warp's work) at a time.
func fakeQuantizeQ8(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	n := a.i64(2)
	dst, src := f.span(a.ptr(0), int64(api.Q8_0.Bytes(int(n)))), f.f32s(a.ptr(1), n)
	for blk := range n / api.Q8Block {
		xs := src[blk*api.Q8Block : (blk+1)*api.Q8Block]
		out := dst[blk*api.Q8BlockBytes : (blk+1)*api.Q8BlockBytes]
		amax := float32(math.Abs(float64(xs[0]))) // ds_warp_max of fabsf
		for _, v := range xs[1:] {
			amax = fmaxf(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var inv float32
		if d != 0 {
			inv = 1 / d
		}
		binary.LittleEndian.PutUint16(out, api.Float32ToFloat16(d)) // PTX cvt.rn.f16.f32
		for lane, v := range xs {
			out[2+lane] = byte(int8(int32(math.Round(float64(v * inv))))) // roundf: half away from zero
		}
	}
}

// fakeGatherQ8 models ds_gather_q8_0 (dst, table, ids, rows, D, V, bad).
func fakeGatherQ8(f *fakeDevice, _ kernels.Geometry, a fakeArgs) {
	rows, D, V := a.i64(3), int64(a.i32(4)), int64(a.i32(5))
	rowBytes := D / api.Q8Block * api.Q8BlockBytes
	dst, table, ids := f.f32s(a.ptr(0), rows*D), f.span(a.ptr(1), V*rowBytes), f.i32s(a.ptr(2), rows)
	bad := f.span(a.ptr(6), 8)
	for i := range rows * D {
		r, j := i/D, i%D
		id := int64(ids[r])
		if id < 0 || id >= V {
			fakeSetFlag(bad, r)
			continue
		}
		dst[i] = q8Value(table[id*rowBytes:], j)
	}
}
