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
	buf := rotaryTables.get(2 * T * half)
	rt := rotaryTasks.get()
	*rt = rotaryTask{theta: theta, offset: offset, half: half, d: d, T: T,
		cos: (*buf)[:T*half], sin: (*buf)[T*half:], src: xt.f32, dst: out.f32, inverse: inverse}
	// First the tables of cosines and sines, one row per position, then the
	// rotation of every row of x.
	rt.tables = true
	b.run(T, seqGrain(8*half), rt)
	rt.tables = false
	b.run(xt.numel()/max(d, 1), seqGrain(d), rt)
	rotaryTasks.put(rt)
	rotaryTables.put(buf)
}

// rotaryTables recycles the cosine and sine tables of Rotary.
var rotaryTables floatPool

// rotaryTask is Rotary's work: with tables set, it fills the cos and sin
// rows of positions [lo, hi); otherwise it rotates rows [lo, hi) of src
// into dst.
type rotaryTask struct {
	theta, cos, sin, src, dst []float32
	offset, half, d, T        int
	inverse, tables           bool
}

var rotaryTasks taskPool[rotaryTask]

func (rt *rotaryTask) run(lo, hi int) {
	half := rt.half
	if rt.tables {
		sign := 1.0
		if rt.inverse {
			sign = -1
		}
		for t := lo; t < hi; t++ {
			pos := float32(rt.offset + t)
			for i, th := range rt.theta {
				sin, cos := math.Sincos(float64(pos * th))
				rt.cos[t*half+i] = float32(cos)
				rt.sin[t*half+i] = float32(sign * sin)
			}
		}
		return
	}
	d := rt.d
	for r := lo; r < hi; r++ {
		t := r % rt.T
		c, s := rt.cos[t*half:(t+1)*half], rt.sin[t*half:(t+1)*half]
		src, o := rt.src[r*d:(r+1)*d], rt.dst[r*d:(r+1)*d]
		for i := range half {
			a, bb := src[2*i], src[2*i+1]
			o[2*i] = a*c[i] - bb*s[i]
			o[2*i+1] = bb*c[i] + a*s[i]
		}
	}
}
