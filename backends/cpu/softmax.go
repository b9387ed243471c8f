package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Softmax-family kernels over the last axis. Each row subtracts its maximum
// before exponentiating, and sums are accumulated in float64.

// rowKernel checks that every tensor has the shape of the first and runs
// fn on each row of the last axis (all slices of one row have the same
// length), in parallel.
func (b *Backend) rowKernel(op string, names []string, ts []*Tensor, fn func(rows [][]float32)) {
	rows, n := rowsOf(op, ts[0], names[1:], ts[1:]...)
	b.parallelGrain(rows, max(1, minGrain/max(n, 1)), func(lo, hi int) {
		rs := make([][]float32, len(ts))
		for r := lo; r < hi; r++ {
			for i, t := range ts {
				rs[i] = t.f32[r*n : (r+1)*n]
			}
			fn(rs)
		}
	})
}

// Softmax sets dst = softmax(x) over the last axis.
func (b *Backend) Softmax(dst, x api.Tensor) {
	const op = "softmax"
	b.rowKernel(op, []string{"x", "dst"}, []*Tensor{b.f32(x, op), b.f32(dst, op)}, func(r [][]float32) {
		x, d := r[0], r[1]
		m := rowMax(x)
		var sum float64
		for j, v := range x {
			e := math.Exp(float64(v) - float64(m))
			sum += e
			d[j] = float32(e)
		}
		inv := 1 / sum
		for j, v := range d {
			d[j] = float32(float64(v) * inv)
		}
	})
}

// rowMax returns the largest element of a non-empty row.
func rowMax(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

// logSumExp returns the row maximum m and log(sum_j exp(x_j - m)), in
// float64: logsumexp(x) = m + the second result. Callers subtract m from
// x_j first, which keeps small differences between huge logits exact.
func logSumExp(x []float32) (m, logSum float64) {
	m = float64(rowMax(x))
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v) - m)
	}
	return m, math.Log(sum)
}

// SoftmaxGrad sets dx = y * (dy - sum(dy * y)) from y = softmax(x).
func (b *Backend) SoftmaxGrad(dx, y, dy api.Tensor) {
	const op = "softmax grad"
	b.rowKernel(op, []string{"y", "dy", "dx"}, []*Tensor{b.f32(y, op), b.f32(dy, op), b.f32(dx, op)}, func(r [][]float32) {
		y, dy, dx := r[0], r[1], r[2]
		var dot float64
		for j, v := range y {
			dot += float64(v) * float64(dy[j])
		}
		for j, v := range y {
			dx[j] = float32(float64(v) * (float64(dy[j]) - dot))
		}
	})
}

// LogSoftmax sets dst = x - logsumexp(x) over the last axis.
func (b *Backend) LogSoftmax(dst, x api.Tensor) {
	const op = "log softmax"
	b.rowKernel(op, []string{"x", "dst"}, []*Tensor{b.f32(x, op), b.f32(dst, op)}, func(r [][]float32) {
		x, d := r[0], r[1]
		m, ls := logSumExp(x)
		for j, v := range x {
			d[j] = float32(float64(v) - m - ls)
		}
	})
}

// LogSoftmaxGrad sets dx = dy - exp(y) * sum(dy) from y = logsoftmax(x).
func (b *Backend) LogSoftmaxGrad(dx, y, dy api.Tensor) {
	const op = "log softmax grad"
	b.rowKernel(op, []string{"y", "dy", "dx"}, []*Tensor{b.f32(y, op), b.f32(dy, op), b.f32(dx, op)}, func(r [][]float32) {
		y, dy, dx := r[0], r[1], r[2]
		var sum float64
		for _, v := range dy {
			sum += float64(v)
		}
		for j, v := range y {
			dx[j] = float32(float64(dy[j]) - math.Exp(float64(v))*sum)
		}
	})
}

// CrossEntropy sets loss[n] = logsumexp(logits[n]) - logits[n, target[n]]
// and, when dlogits is not nil, dlogits[n] = softmax(logits[n]) -
// onehot(target[n]); rows whose target is ignoreIndex get 0 for both.
// Targets are all checked before anything is written.
func (b *Backend) CrossEntropy(loss, dlogits, logits, targets api.Tensor, ignoreIndex int32) {
	const op = "cross entropy"
	l, g, x, t := b.f32(loss, op), b.f32OrNil(dlogits, op), b.f32(logits, op), b.i32(targets, op)
	if len(x.shape) != 2 {
		api.Panicf(api.ErrShape, "%s: logits %v, want [N,V]", op, x.shape)
	}
	n, v := x.shape[0], x.shape[1]
	wantShape(op, "targets", t, n)
	wantShape(op, "loss", l, n)
	if g != nil {
		wantShape(op, "dlogits", g, n, v)
	}
	for i, tg := range t.i32 {
		if tg != ignoreIndex && (tg < 0 || int(tg) >= v) {
			api.Panicf(api.ErrOutOfRange, "%s: target %d of row %d is outside [0,%d)", op, tg, i, v)
		}
	}
	b.parallelGrain(n, max(1, minGrain/max(v, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			tg := t.i32[i]
			var gr []float32
			if g != nil {
				gr = g.f32[i*v : (i+1)*v]
			}
			if tg == ignoreIndex {
				l.f32[i] = 0
				clear(gr)
				continue
			}
			xr := x.f32[i*v : (i+1)*v]
			m, ls := logSumExp(xr)
			l.f32[i] = float32(ls + (m - float64(xr[tg])))
			if gr == nil {
				continue
			}
			for j, z := range xr {
				gr[j] = float32(math.Exp(float64(z) - m - ls))
			}
			gr[tg] = float32(math.Exp(float64(xr[tg])-m-ls) - 1)
		}
	})
}
