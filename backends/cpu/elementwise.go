package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Element-wise kernels: Unary, UnaryGrad and Affine. The transcendental
// functions are evaluated in float64 and rounded once, so every result is
// the float32 nearest the exact value (up to the last bit of math's
// float64 functions).

// Unary sets dst = op(x); same shape, dst may be x.
func (b *Backend) Unary(op api.UnaryOp, dst, x api.Tensor) {
	const name = "unary"
	d, s := b.f32(dst, name), b.f32(x, name)
	if !d.shape.Equal(s.shape) {
		api.Panicf(api.ErrShape, "%s %v: dst %v, x %v", name, op, d.shape, s.shape)
	}
	if op < api.OpNeg || op > api.OpRelu {
		api.Panicf(api.ErrUnsupported, "unary op %d", op)
	}
	t := unaryTasks.get()
	*t = unaryTask{op: op, dst: d.f32, x: s.f32}
	b.run(len(d.f32), minGrain, t)
	unaryTasks.put(t)
}

// unaryTask applies op to x into dst.
type unaryTask struct {
	op     api.UnaryOp
	dst, x []float32
}

var unaryTasks taskPool[unaryTask]

func (t *unaryTask) run(lo, hi int) { unary(t.op, t.dst[lo:hi], t.x[lo:hi]) }

// unary sets d[i] = op(x[i]); len(x) == len(d).
func unary(op api.UnaryOp, d, x []float32) {
	x = x[:len(d)]
	switch op {
	case api.OpNeg:
		for i, v := range x {
			d[i] = -v
		}
	case api.OpExp:
		for i, v := range x {
			d[i] = float32(math.Exp(float64(v)))
		}
	case api.OpLog:
		for i, v := range x {
			d[i] = float32(math.Log(float64(v)))
		}
	case api.OpSqrt:
		for i, v := range x {
			d[i] = float32(math.Sqrt(float64(v)))
		}
	case api.OpRsqrt:
		for i, v := range x {
			d[i] = float32(1 / math.Sqrt(float64(v)))
		}
	case api.OpSquare:
		for i, v := range x {
			d[i] = v * v
		}
	case api.OpAbs:
		for i, v := range x {
			d[i] = float32(math.Abs(float64(v)))
		}
	case api.OpSigmoid:
		for i, v := range x {
			d[i] = float32(sigmoid(float64(v)))
		}
	case api.OpSilu:
		for i, v := range x {
			d[i] = float32(float64(v) * sigmoid(float64(v)))
		}
	case api.OpSoftplus:
		for i, v := range x {
			d[i] = float32(softplus(float64(v)))
		}
	case api.OpTanh:
		for i, v := range x {
			d[i] = float32(math.Tanh(float64(v)))
		}
	case api.OpRelu:
		for i, v := range x {
			d[i] = max(v, 0)
		}
	}
}

// sigmoid returns 1/(1+e^-x) without overflow for large |x|.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus returns log(1+e^x), or x itself above PyTorch's threshold 20.
func softplus(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// UnaryGrad sets dx = dy * op'(x); all the same shape.
func (b *Backend) UnaryGrad(op api.UnaryOp, dx, x, dy api.Tensor) {
	const name = "unary grad"
	g, s, up := b.f32(dx, name), b.f32(x, name), b.f32(dy, name)
	if !g.shape.Equal(s.shape) || !up.shape.Equal(s.shape) {
		api.Panicf(api.ErrShape, "%s %v: dx %v, x %v, dy %v", name, op, g.shape, s.shape, up.shape)
	}
	if op < api.OpNeg || op > api.OpRelu {
		api.Panicf(api.ErrUnsupported, "unary op %d", op)
	}
	b.parallel(len(g.f32), func(lo, hi int) { unaryGrad(op, g.f32[lo:hi], s.f32[lo:hi], up.f32[lo:hi]) })
}

// unaryGrad sets d[i] = dy[i] * op'(x[i]); all of the same length.
func unaryGrad(op api.UnaryOp, d, x, dy []float32) {
	x, dy = x[:len(d)], dy[:len(d)]
	switch op {
	case api.OpNeg:
		for i, g := range dy {
			d[i] = -g
		}
	case api.OpExp:
		for i, v := range x {
			d[i] = float32(float64(dy[i]) * math.Exp(float64(v)))
		}
	case api.OpLog:
		for i, v := range x {
			d[i] = float32(float64(dy[i]) / float64(v))
		}
	case api.OpSqrt:
		for i, v := range x {
			d[i] = float32(float64(dy[i]) * 0.5 / math.Sqrt(float64(v)))
		}
	case api.OpRsqrt: // d/dx x^-1/2 = -x^-3/2 / 2
		for i, v := range x {
			x64 := float64(v)
			d[i] = float32(float64(dy[i]) * -0.5 / (x64 * math.Sqrt(x64)))
		}
	case api.OpSquare:
		for i, v := range x {
			d[i] = float32(float64(dy[i]) * 2 * float64(v))
		}
	case api.OpAbs:
		for i, v := range x {
			switch {
			case v > 0:
				d[i] = dy[i]
			case v < 0:
				d[i] = -dy[i]
			default:
				d[i] = 0
			}
		}
	case api.OpSigmoid:
		for i, v := range x {
			s := sigmoid(float64(v))
			d[i] = float32(float64(dy[i]) * s * (1 - s))
		}
	case api.OpSilu: // s + x s (1-s)
		for i, v := range x {
			x64 := float64(v)
			s := sigmoid(x64)
			d[i] = float32(float64(dy[i]) * s * (1 + x64*(1-s)))
		}
	case api.OpSoftplus:
		for i, v := range x {
			if v > 20 {
				d[i] = dy[i]
				continue
			}
			d[i] = float32(float64(dy[i]) * sigmoid(float64(v)))
		}
	case api.OpTanh:
		for i, v := range x {
			t := math.Tanh(float64(v))
			d[i] = float32(float64(dy[i]) * (1 - t*t))
		}
	case api.OpRelu:
		for i, v := range x {
			if v > 0 {
				d[i] = dy[i]
			} else {
				d[i] = 0
			}
		}
	}
}

// Affine sets dst = x*scale + shift; same shape, dst may be x.
func (b *Backend) Affine(dst, x api.Tensor, scale, shift float32) {
	const op = "affine"
	d, s := b.f32(dst, op), b.f32(x, op)
	if !d.shape.Equal(s.shape) {
		api.Panicf(api.ErrShape, "%s: dst %v, x %v", op, d.shape, s.shape)
	}
	t := affineTasks.get()
	*t = affineTask{dst: d.f32, x: s.f32, scale: float64(scale), shift: float64(shift)}
	b.run(len(d.f32), minGrain, t)
	affineTasks.put(t)
}

// affineTask sets dst = x*scale + shift.
type affineTask struct {
	dst, x       []float32
	scale, shift float64
}

var affineTasks taskPool[affineTask]

func (t *affineTask) run(lo, hi int) {
	dd, xx := t.dst[lo:hi], t.x[lo:hi]
	for i, v := range xx {
		// One rounding: the float64 product of two float32 is exact.
		dd[i] = float32(float64(v)*t.scale + t.shift)
	}
}
