package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Element-wise kernels: Unary, UnaryGrad and Affine. Accuracy, in units in
// the last place of the float32 result:
//   - exp is expVec (exp.go): at most 1.02 ulp.
//   - sigmoid, silu and softplus take e^-|x| from the vector exp and finish
//     in float64 with one rounding: at most 2 ulp (TestUnaryAccuracy
//     measures about 1.5). On AVX2 CPUs sigmoid and silu run whole in one
//     kernel (sigmoidVec); elsewhere, and softplus always, e^-|x| goes
//     through chunks of expChunk floats on the stack. silu of x < -87.3,
//     where e^x is subnormal, is recomputed from float64 math.Exp. The
//     gradients are computed the float64 way, to about 1e-7 relative.
//   - log, sqrt, rsqrt and tanh are evaluated in float64 and rounded once,
//     so they are the float32 nearest the exact value (up to the last bit of
//     math's float64 functions). tanh stays there: built on e^x it would
//     lose its relative accuracy near 0, and no model uses it in a hot
//     path.
// Every element's result depends on its own inputs only, so results do not
// depend on how the work is split between threads.

// expChunk is the number of floats the exponential-based ops pass through
// their stack buffer at a time: 1 KiB, which stays in L1.
const expChunk = 256

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
	case api.OpSigmoid, api.OpSilu, api.OpSoftplus:
		var e [expChunk]float32
		for lo := 0; lo < len(d); lo += expChunk {
			hi := min(lo+expChunk, len(d))
			unaryExp(op, d[lo:hi], x[lo:hi], e[:hi-lo])
		}
		return
	case api.OpNeg:
		for i, v := range x {
			d[i] = -v
		}
	case api.OpExp:
		expVec(d, x)
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

// sigmoidParts returns s = sigmoid(v) and 1-s given e = e^-|v|, in float64
// and without cancellation: for v >= 0, s = 1/(1+e) and 1-s = e/(1+e); for
// v < 0 the other way round. The numerators are chosen with bit masks, as
// the signs of activations are unpredictable to a branch.
func sigmoidParts(v, e float32) (s, c float64) {
	const one = 0x3f800000               // math.Float32bits(1)
	mask := -(math.Float32bits(v) >> 31) // all ones where v < 0
	eb := math.Float32bits(e)
	num := one&^mask | eb&mask // the bits of e where v < 0, else of 1
	inv := 1 / (1 + float64(e))
	return float64(math.Float32frombits(num)) * inv, float64(math.Float32frombits(num^one^eb)) * inv
}

// siluFarBelow is where e^v becomes subnormal in float32 (e^-87.3 is just
// above 2^-126): below it silu takes siluFar.
const siluFarBelow = -87.3

// siluFar returns silu(v) and its derivative for v < siluFarBelow, where
// e^-|v| has too few bits to be multiplied by v, from float64 math.Exp.
func siluFar(v float32) (y, dy float64) {
	x := float64(v)
	e := math.Exp(x)
	s := e / (1 + e)
	return x * s, s * (1 + x/(1+e))
}

// log1pUnit returns log(1+u) for u in [0, 1], to 1.6e-9 relative: 2
// atanh(s) with s = u/(2+u) <= 1/3, by the series 2s (1 + s^2/3 + s^4/5 +
// ... + s^14/15), whose remainder is below (1/9)^8/17 * 9/8. The series is
// summed in pairs of terms (Estrin's scheme), which shortens the chain of
// dependent operations that Horner's rule would make. It is several times
// faster than math.Log1p, which handles every input.
func log1pUnit(u float64) float64 {
	s := u / (2 + u)
	z := s * s
	z2 := z * z
	z4 := z2 * z2
	p := (1 + z*(1.0/3)) + z2*(1.0/5+z*(1.0/7)) + z4*((1.0/9+z*(1.0/11))+z2*(1.0/13+z*(1.0/15)))
	return 2 * s * p
}

// unaryExp sets d[i] = op(x[i]) for sigmoid, silu and softplus, using e as
// scratch space; len(x) == len(e) == len(d), and d may be x.
func unaryExp(op api.UnaryOp, d, x, e []float32) {
	if (op == api.OpSigmoid || op == api.OpSilu) && sigmoidVec(d, x, op == api.OpSilu) {
		return
	}
	expNegAbs(e, x)
	switch op {
	case api.OpSigmoid:
		for i, v := range x {
			s, _ := sigmoidParts(v, e[i])
			d[i] = float32(s)
		}
	case api.OpSilu:
		for i, v := range x {
			if v < siluFarBelow {
				y, _ := siluFar(v)
				d[i] = float32(y)
				continue
			}
			s, _ := sigmoidParts(v, e[i])
			d[i] = float32(float64(v) * s)
		}
	case api.OpSoftplus:
		// log(1+e^x) = max(x, 0) + log1p(e^-|x|); x itself above PyTorch's
		// threshold 20.
		for i, v := range x {
			if v > 20 {
				d[i] = v
				continue
			}
			d[i] = float32(float64(max(v, 0)) + log1pUnit(float64(e[i])))
		}
	}
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
	case api.OpExp, api.OpSigmoid, api.OpSilu, api.OpSoftplus:
		var e [expChunk]float32
		for lo := 0; lo < len(d); lo += expChunk {
			hi := min(lo+expChunk, len(d))
			unaryGradExp(op, d[lo:hi], x[lo:hi], dy[lo:hi], e[:hi-lo])
		}
		return
	case api.OpNeg:
		for i, g := range dy {
			d[i] = -g
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

// unaryGradExp sets d[i] = dy[i] * op'(x[i]) for exp, sigmoid, silu and
// softplus, using e as scratch space; all of the same length.
func unaryGradExp(op api.UnaryOp, d, x, dy, e []float32) {
	if op == api.OpExp {
		expVec(e, x)
		for i, g := range dy {
			d[i] = float32(float64(g) * float64(e[i]))
		}
		return
	}
	expNegAbs(e, x)
	switch op {
	case api.OpSigmoid:
		for i, v := range x {
			s, c := sigmoidParts(v, e[i])
			d[i] = float32(float64(dy[i]) * s * c)
		}
	case api.OpSilu: // s + x s (1-s)
		for i, v := range x {
			if v < siluFarBelow {
				_, g := siluFar(v)
				d[i] = float32(float64(dy[i]) * g)
				continue
			}
			s, c := sigmoidParts(v, e[i])
			d[i] = float32(float64(dy[i]) * s * (1 + float64(v)*c))
		}
	case api.OpSoftplus:
		for i, v := range x {
			if v > 20 {
				d[i] = dy[i]
				continue
			}
			s, _ := sigmoidParts(v, e[i])
			d[i] = float32(float64(dy[i]) * s)
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
