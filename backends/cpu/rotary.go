package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Rotary rotates the interleaved pairs (2i, 2i+1) of the last axis of x
// [..., T, d] by the angle φ = float32(offset+t) * theta[i] of their row's
// position t (see api.Kernels), or by -φ when inverse. dst may be x. The
// cosines and sines are computed once per (t, i) in float64 and rounded to
// float32; the rotation itself is float32, as torchscale computes it.
func (b *Backend) Rotary(dst, x api.Tensor, theta []float32, offset int, inverse bool) {
	const op = "Rotary"
	xt, out := b.f32(x, op), b.f32(dst, op)
	if xt.shape.Rank() < 2 {
		api.Panicf(api.ErrShape, "%s: x has shape %v, want [..., T, d]", op, xt.shape)
	}
	if !out.shape.Equal(xt.shape) {
		api.Panicf(api.ErrShape, "%s: dst has shape %v, want %v", op, out.shape, xt.shape)
	}
	T, d := xt.shape.Dim(-2), xt.shape.Dim(-1)
	if d%2 != 0 || len(theta) != d/2 {
		api.Panicf(api.ErrShape, "%s: x %v with %d thetas, want an even last axis and d/2 thetas", op, xt.shape, len(theta))
	}
	if offset < 0 {
		api.Panicf(api.ErrOutOfRange, "%s: negative offset %d", op, offset)
	}
	half := d / 2
	cos := make([]float32, T*half)
	sin := make([]float32, T*half)
	sign := 1.0
	if inverse {
		sign = -1
	}
	b.parallelGrain(T, seqGrain(8*half), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			pos := float32(offset + t)
			for i, th := range theta {
				phi := float64(pos * th)
				cos[t*half+i] = float32(math.Cos(phi))
				sin[t*half+i] = float32(sign * math.Sin(phi))
			}
		}
	})
	rows := xt.numel() / max(d, 1)
	b.parallelGrain(rows, seqGrain(d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t := r % T
			c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
			src, o := xt.f32[r*d:(r+1)*d], out.f32[r*d:(r+1)*d]
			for i := range half {
				a, bb := src[2*i], src[2*i+1]
				o[2*i] = a*c[i] - bb*s[i]
				o[2*i+1] = bb*c[i] + a*s[i]
			}
		}
	})
}
