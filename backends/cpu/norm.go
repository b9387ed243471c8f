package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// rowsOf checks that x, and every tensor in same, has shape [..., D] with
// the same leading axes as x, and returns the number of rows and D. A
// rank-0 x is one row of one element.
func rowsOf(op string, x *Tensor, names []string, same ...*Tensor) (rows, d int) {
	for i, t := range same {
		if !t.shape.Equal(x.shape) {
			api.Panicf(api.ErrShape, "%s: %s has shape %v, want %v", op, names[i], t.shape, x.shape)
		}
	}
	d = 1
	if len(x.shape) > 0 {
		d = x.shape[len(x.shape)-1]
	}
	if d == 0 {
		return 0, 0
	}
	return x.numel() / d, d
}

// RMSNorm sets dst = x * rsqrt(mean(x^2) + eps) * w over the last axis; w
// may be nil. The mean of squares is accumulated in float64.
func (b *Backend) RMSNorm(dst, x, w api.Tensor, eps float32) {
	const op = "rmsnorm"
	d, s, wt := b.f32(dst, op), b.f32(x, op), b.f32OrNil(w, op)
	rows, n := rowsOf(op, s, []string{"dst"}, d)
	var ws []float32
	if wt != nil {
		if len(s.shape) > 0 {
			wantShape(op, "weight", wt, s.shape[len(s.shape)-1])
		} else {
			wantShape(op, "weight", wt, 1)
		}
		ws = wt.f32
	}
	task := rmsNormTasks.get()
	*task = rmsNormTask{dst: d.f32, x: s.f32, w: ws, n: n, eps: eps}
	b.run(rows, max(1, minGrain/max(n, 1)), task)
	rmsNormTasks.put(task)
}

// rmsNormTask normalizes rows of n floats of x into dst, scaled by w
// unless w is nil.
type rmsNormTask struct {
	dst, x, w []float32
	n         int
	eps       float32
}

var rmsNormTasks taskPool[rmsNormTask]

func (t *rmsNormTask) run(lo, hi int) {
	n := t.n
	for r := lo; r < hi; r++ {
		xr, dr := t.x[r*n:(r+1)*n], t.dst[r*n:(r+1)*n]
		rmsScale(dr, xr, t.w, rmsInv(xr, t.eps))
	}
}

// rmsSumSquaresFrom returns ss plus the sum of x[i]^2, accumulated in
// float64 in order: rmsSumSquares in pure Go, or its tail.
func rmsSumSquaresFrom(ss float64, x []float32) float64 {
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return ss
}

// rmsScaleGeneric is rmsScale in pure Go.
func rmsScaleGeneric(d, x, w []float32, inv float64) {
	x = x[:len(d)]
	if w == nil {
		for j, v := range x {
			d[j] = float32(float64(v) * inv)
		}
		return
	}
	w = w[:len(d)]
	for j, v := range x {
		d[j] = float32(float64(v) * inv * float64(w[j]))
	}
}

// rmsInv returns 1/sqrt(mean(x^2) + eps), accumulated in float64 (by
// rmsSumSquares, whose order depends on the build but never on the split
// of the rows between threads).
func rmsInv(x []float32, eps float32) float64 {
	return 1 / math.Sqrt(rmsSumSquares(x)/float64(len(x))+float64(eps))
}

// RMSNormGrad sets dx [..., D] and dw [D] (summed over rows; nil when w is)
// from dy. With y = x r w and r = (mean(x^2) + eps)^-1/2:
//
//	dx_j = r w_j dy_j - r^3 x_j / D * sum_i dy_i w_i x_i
//	dw_j = sum over rows of dy_j x_j r
func (b *Backend) RMSNormGrad(dx, dw, x, w, dy api.Tensor, eps float32) {
	const op = "rmsnorm grad"
	s, up := b.f32(x, op), b.f32(dy, op)
	g, gw, wt := b.f32OrNil(dx, op), b.f32OrNil(dw, op), b.f32OrNil(w, op)
	same, names := []*Tensor{up}, []string{"dy"}
	if g != nil {
		same, names = append(same, g), append(names, "dx")
	}
	rows, n := rowsOf(op, s, names, same...)
	last := 1
	if len(s.shape) > 0 {
		last = s.shape[len(s.shape)-1]
	}
	var ws []float32
	if wt != nil {
		wantShape(op, "weight", wt, last)
		ws = wt.f32
	}
	if gw != nil {
		if wt == nil {
			api.Panicf(api.ErrShape, "%s: dw %v given without a weight", op, gw.shape)
		}
		wantShape(op, "dw", gw, last)
	}
	if g != nil {
		b.parallelGrain(rows, max(1, minGrain/max(n, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, yr, gr := s.f32[r*n:(r+1)*n], up.f32[r*n:(r+1)*n], g.f32[r*n:(r+1)*n]
				rmsRowGrad(gr, xr, ws, yr, eps)
			}
		})
	}
	if gw != nil {
		b.rmsWeightGrad(gw.f32, s.f32, up.f32, rows, n, eps)
	}
}

// rmsRowGrad sets the gradient g of one row x from dy; w may be nil.
func rmsRowGrad(g, x, w, dy []float32, eps float32) {
	x, dy = x[:len(g)], dy[:len(g)]
	inv := rmsInv(x, eps)
	var dot float64 // sum_i dy_i w_i x_i
	if w != nil {
		w = w[:len(g)]
		for i, v := range x {
			dot += float64(dy[i]) * float64(w[i]) * float64(v)
		}
	} else {
		for i, v := range x {
			dot += float64(dy[i]) * float64(v)
		}
	}
	c := inv * inv * inv * dot / float64(len(x))
	for j, v := range x {
		wj := 1.0
		if w != nil {
			wj = float64(w[j])
		}
		g[j] = float32(inv*wj*float64(dy[j]) - c*float64(v))
	}
}

// rmsWeightGrad sets dw[j] = sum over rows of dy[r,j] x[r,j] r_r. Columns
// are split into blocks accumulated in float64 on the stack; the per-row
// factors r_r are computed first.
func (b *Backend) rmsWeightGrad(dw, x, dy []float32, rows, n int, eps float32) {
	inv := make([]float64, rows)
	b.parallelGrain(rows, max(1, minGrain/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			inv[r] = rmsInv(x[r*n:(r+1)*n], eps)
		}
	})
	blocks := (n + sumBlock - 1) / sumBlock
	b.parallelGrain(blocks, max(1, minGrain/max(rows*sumBlock, 1)), func(lo, hi int) {
		var acc [sumBlock]float64
		for blk := lo; blk < hi; blk++ {
			j0 := blk * sumBlock
			a := acc[:min(sumBlock, n-j0)]
			clear(a)
			for r, f := range inv {
				xr := x[r*n+j0 : r*n+j0+len(a)]
				yr := dy[r*n+j0 : r*n+j0+len(a)]
				for j, v := range xr {
					a[j] += float64(yr[j]) * float64(v) * f
				}
			}
			out := dw[j0 : j0+len(a)]
			for j, v := range a {
				out[j] = float32(v)
			}
		}
	})
}
