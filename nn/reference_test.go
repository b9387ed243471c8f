package nn

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

// Float64 reference forwards for the whole-graph tests. Every array is flat
// and row-major; shapes are in the comments. checkGraph differentiates them
// by central differences with a step of 1e-6 (relative to the value, at
// least 1e-6 absolute): in float64 the truncation error (about h^2 = 1e-12)
// and the rounding noise (about 1e-16/h = 1e-10) are far below float32's
// precision, so the comparison measures the error of the float32 backward
// pass alone.

// vals maps the names of a graph's inputs to float64 copies of their values.
type vals map[string][]float64

// float64s reads an F32 tensor as float64 values.
func float64s(t api.Tensor) []float64 {
	f := api.Float32s(t)
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

// checkGraph compares the gradient Backward gives each of vars for the loss
// built by loss with central differences of ref, a float64 forward of the
// same graph, and the float32 loss with ref's value. ref is first evaluated
// at the unperturbed values.
func checkGraph(t *testing.T, b api.Backend, vars []named, tol float64, loss func(tp *Tape) *Var, ref func(v vals) float64) {
	t.Helper()
	for _, nv := range vars {
		nv.v.ZeroGrad()
	}
	tp := NewTape(b)
	l := loss(tp)
	tp.Backward(l)
	v := vals{}
	for _, nv := range vars {
		v[nv.name] = float64s(nv.v.Value())
	}
	want := ref(v)
	if got := scalar(l); math.Abs(got-want) > 1e-5*math.Abs(want) {
		t.Errorf("loss %.8g, float64 reference %.8g", got, want)
	}
	for _, nv := range vars {
		x := v[nv.name]
		fd := make([]float64, len(x))
		for i, xi := range x {
			h := 1e-6 * max(1, math.Abs(xi))
			x[i] = xi + h
			up := ref(v)
			x[i] = xi - h
			down := ref(v)
			x[i] = xi
			fd[i] = (up - down) / (2 * h)
		}
		if nv.v.Grad() == nil {
			t.Errorf("%s: no gradient", nv.name)
			continue
		}
		got := api.Float32s(nv.v.Grad())
		if e, i := relErr(got, fd); e > tol || math.IsNaN(e) {
			t.Errorf("%s: gradient relative error %.3g > %.0e (worst at %d: backward %.8g, float64 difference %.8g)",
				nv.name, e, tol, i, got[i], fd[i])
		}
	}
}

// refMap applies f element-wise.
func refMap(x []float64, f func(float64) float64) []float64 {
	out := make([]float64, len(x))
	for i, a := range x {
		out[i] = f(a)
	}
	return out
}

// refZip combines two arrays of the same length element-wise.
func refZip(x, y []float64, f func(a, b float64) float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = f(x[i], y[i])
	}
	return out
}

func refAdd(x, y []float64) []float64 {
	return refZip(x, y, func(a, b float64) float64 { return a + b })
}
func refMul(x, y []float64) []float64 {
	return refZip(x, y, func(a, b float64) float64 { return a * b })
}

func refSigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
func refSilu(x float64) float64    { return x * refSigmoid(x) }
func refSoftplus(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// refLinear is x [rows,in] w^T + bias: w [out,in], bias [out] or nil.
func refLinear(x []float64, in int, w []float64, bias []float64) []float64 {
	out := len(w) / in
	rows := len(x) / in
	y := make([]float64, rows*out)
	for r := range rows {
		for o := range out {
			var s float64
			if bias != nil {
				s = bias[o]
			}
			for i := range in {
				s += x[r*in+i] * w[o*in+i]
			}
			y[r*out+o] = s
		}
	}
	return y
}

// refRMSNorm normalises each row of width d: x * rsqrt(mean(x^2) + eps) * w,
// w [d] or nil.
func refRMSNorm(x []float64, d int, w []float64, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < len(x); r += d {
		var ms float64
		for _, a := range x[r : r+d] {
			ms += a * a
		}
		inv := 1 / math.Sqrt(ms/float64(d)+eps)
		for i := range d {
			y[r+i] = x[r+i] * inv
			if w != nil {
				y[r+i] *= w[i]
			}
		}
	}
	return y
}

// refCols returns columns [start, start+n) of x [rows, width].
func refCols(x []float64, width, start, n int) []float64 {
	rows := len(x) / width
	y := make([]float64, 0, rows*n)
	for r := range rows {
		y = append(y, x[r*width+start:r*width+start+n]...)
	}
	return y
}

// refGather returns the rows [len(ids), d] of table [V,d].
func refGather(table []float64, d int, ids []int32) []float64 {
	y := make([]float64, 0, len(ids)*d)
	for _, id := range ids {
		y = append(y, table[int(id)*d:int(id+1)*d]...)
	}
	return y
}

// refCrossEntropy is the mean over counted rows of logsumexp(logits[r]) -
// logits[r, target], logits [rows, v].
func refCrossEntropy(logits []float64, v int, targets []int32) float64 {
	var sum float64
	n := 0
	for r, tg := range targets {
		if tg == api.IgnoreIndex {
			continue
		}
		row := logits[r*v : (r+1)*v]
		m := math.Inf(-1)
		for _, a := range row {
			m = max(m, a)
		}
		var z float64
		for _, a := range row {
			z += math.Exp(a - m)
		}
		sum += m + math.Log(z) - row[tg]
		n++
	}
	return sum / float64(n)
}

// refConv is the causal depthwise convolution with zero history: x [B,T,C],
// w [C,K] (the [C,1,K] weight read flat), bias [C] or nil.
func refConv(x []float64, bs, tl, c int, w []float64, k int, bias []float64) []float64 {
	y := make([]float64, len(x))
	for b := range bs {
		for t := range tl {
			for ch := range c {
				var s float64
				if bias != nil {
					s = bias[ch]
				}
				for j := range k {
					if src := t - (k - 1) + j; src >= 0 {
						s += w[ch*k+j] * x[(b*tl+src)*c+ch]
					}
				}
				y[(b*tl+t)*c+ch] = s
			}
		}
	}
	return y
}

// refScan is the selective scan from a zero state: x, delta [B,T,E], a
// [E,N], bm, cm [B,T,N], d [E].
func refScan(x, delta, a, bm, cm, d []float64, bs, tl, e, n int) []float64 {
	y := make([]float64, len(x))
	h := make([]float64, e*n)
	for b := range bs {
		clear(h)
		for t := range tl {
			for i := range e {
				xi, dt := x[(b*tl+t)*e+i], delta[(b*tl+t)*e+i]
				s := d[i] * xi
				for j := range n {
					h[i*n+j] = math.Exp(dt*a[i*n+j])*h[i*n+j] + dt*bm[(b*tl+t)*n+j]*xi
					s += h[i*n+j] * cm[(b*tl+t)*n+j]
				}
				y[(b*tl+t)*e+i] = s
			}
		}
	}
	return y
}

// refRotary rotates x [B,T,H*d] per head by position t from 0, with the
// kernel's float32 angle float32(t)*theta[i].
func refRotary(x []float64, bs, tl, h, d int, theta []float32) []float64 {
	y := make([]float64, len(x))
	for b := range bs {
		for t := range tl {
			for hd := range h {
				base := ((b*tl+t)*h + hd) * d
				for i := range d / 2 {
					phi := float64(float32(t) * theta[i])
					p, q := x[base+2*i], x[base+2*i+1]
					y[base+2*i] = p*math.Cos(phi) - q*math.Sin(phi)
					y[base+2*i+1] = q*math.Cos(phi) + p*math.Sin(phi)
				}
			}
		}
	}
	return y
}

// refRetentionRecurrent is the recurrent retention form from a zero state
// with heads interleaved as the projections leave them: q, k [B,T,H*dk], v
// [B,T,H*dv]; the result is [B,T,H*dv].
func refRetentionRecurrent(q, k, v []float64, bs, tl, h, dk, dv int, gamma []float32) []float64 {
	o := make([]float64, bs*tl*h*dv)
	s := make([]float64, dk*dv)
	for b := range bs {
		for hd := range h {
			g := float64(gamma[hd])
			clear(s)
			sum := 0.0 // s_{p-1}
			for t := range tl {
				next := sum*g + 1
				decay := g * math.Sqrt(sum/next)
				qr := q[((b*tl+t)*h+hd)*dk:][:dk]
				kr := k[((b*tl+t)*h+hd)*dk:][:dk]
				vr := v[((b*tl+t)*h+hd)*dv:][:dv]
				orow := o[((b*tl+t)*h+hd)*dv:][:dv]
				for i := range dk {
					for j := range dv {
						s[i*dv+j] = s[i*dv+j]*decay + kr[i]*vr[j]/math.Sqrt(next)
						orow[j] += qr[i] * s[i*dv+j]
					}
				}
				sum = next
			}
		}
	}
	return o
}

// refRetentionParallel is torchscale's parallel retention with the layout of
// refRetentionRecurrent. The row denominators clamp(sum_m |A[n,m]|, 1, 5e4)
// are computed into *den when it is nil and read from it otherwise, so that
// finite differences around a point treat them as constants, as the
// backward pass does.
func refRetentionParallel(q, k, v []float64, bs, tl, h, dk, dv int, gamma []float32, den *[]float64) []float64 {
	if *den == nil {
		*den = make([]float64, bs*h*tl)
		for i := range *den {
			(*den)[i] = -1
		}
	}
	o := make([]float64, bs*tl*h*dv)
	a := make([]float64, tl)
	for b := range bs {
		for hd := range h {
			g := float64(gamma[hd])
			for n := range tl {
				sn := 0.0
				for j := 0; j <= n; j++ {
					sn += math.Pow(g, float64(j))
				}
				abs := 0.0
				for m := 0; m <= n; m++ {
					var dot float64
					for i := range dk {
						dot += q[((b*tl+n)*h+hd)*dk+i] * k[((b*tl+m)*h+hd)*dk+i]
					}
					a[m] = dot * math.Pow(g, float64(n-m)) / math.Sqrt(sn)
					abs += math.Abs(a[m])
				}
				di := (b*h+hd)*tl + n
				if (*den)[di] < 0 {
					(*den)[di] = min(max(abs, 1), 5e4)
				}
				for m := 0; m <= n; m++ {
					for j := range dv {
						o[((b*tl+n)*h+hd)*dv+j] += a[m] / (*den)[di] * v[((b*tl+m)*h+hd)*dv+j]
					}
				}
			}
		}
	}
	return o
}
