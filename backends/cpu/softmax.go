package cpu

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Softmax-family kernels over the last axis. Each row subtracts its maximum
// before exponentiating, and sums are accumulated in float64.

// rowOp names the computation a rowTask does on each row.
type rowOp uint8

// The row computations, on the rows of the tensors a rowTask holds.
const (
	rowSoftmax        rowOp = iota + 1 // (x, dst): softmaxRow
	rowLogSoftmax                      // (x, dst): logSoftmaxRow
	rowSoftmaxGrad                     // (y, dy, dx): softmaxGradRow
	rowLogSoftmaxGrad                  // (y, dy, dx): logSoftmaxGradRow
)

// rowKernel checks that every tensor of ts has the shape of the first
// (names[i] names ts[i] in errors) and runs fn on each row of the last
// axis, in parallel.
func (b *Backend) rowKernel(op string, fn rowOp, names []string, ts ...*Tensor) {
	rows, n := rowsOf(op, ts[0], names[1:], ts[1:]...)
	t := rowTasks.get()
	t.fn, t.n = fn, n
	for i, x := range ts {
		t.args[i] = x.f32
	}
	b.run(rows, max(1, minGrain/max(n, 1)), t)
	rowTasks.put(t)
}

// rowTask runs fn on rows of n floats of up to three tensors.
type rowTask struct {
	fn   rowOp
	n    int
	args [3][]float32
}

var rowTasks taskPool[rowTask]

func (t *rowTask) run(lo, hi int) {
	n := t.n
	var r [3][]float32
	for i := lo; i < hi; i++ {
		for k, a := range t.args {
			if a != nil {
				r[k] = a[i*n : (i+1)*n]
			}
		}
		switch t.fn {
		case rowSoftmax:
			softmaxRow(r[1], r[0])
		case rowLogSoftmax:
			logSoftmaxRow(r[1], r[0])
		case rowSoftmaxGrad:
			softmaxGradRow(r[2], r[0], r[1])
		case rowLogSoftmaxGrad:
			logSoftmaxGradRow(r[2], r[0], r[1])
		}
	}
}

// Softmax sets dst = softmax(x) over the last axis.
func (b *Backend) Softmax(dst, x api.Tensor) {
	const op = "softmax"
	b.rowKernel(op, rowSoftmax, []string{"x", "dst"}, b.f32(x, op), b.f32(dst, op))
}

// softmaxRow sets d = softmax(x) for one row.
func softmaxRow(d, x []float32) {
	d = d[:len(x)]
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
	b.rowKernel(op, rowSoftmaxGrad, []string{"y", "dy", "dx"}, b.f32(y, op), b.f32(dy, op), b.f32(dx, op))
}

// softmaxGradRow sets dx from y = softmax(x) and dy for one row.
func softmaxGradRow(dx, y, dy []float32) {
	dx, dy = dx[:len(y)], dy[:len(y)]
	var dot float64
	for j, v := range y {
		dot += float64(v) * float64(dy[j])
	}
	for j, v := range y {
		dx[j] = float32(float64(v) * (float64(dy[j]) - dot))
	}
}

// LogSoftmax sets dst = x - logsumexp(x) over the last axis.
func (b *Backend) LogSoftmax(dst, x api.Tensor) {
	const op = "log softmax"
	b.rowKernel(op, rowLogSoftmax, []string{"x", "dst"}, b.f32(x, op), b.f32(dst, op))
}

// logSoftmaxRow sets d = log(softmax(x)) for one row.
func logSoftmaxRow(d, x []float32) {
	d = d[:len(x)]
	m, ls := logSumExp(x)
	for j, v := range x {
		d[j] = float32(float64(v) - m - ls)
	}
}

// LogSoftmaxGrad sets dx = dy - exp(y) * sum(dy) from y = logsoftmax(x).
func (b *Backend) LogSoftmaxGrad(dx, y, dy api.Tensor) {
	const op = "log softmax grad"
	b.rowKernel(op, rowLogSoftmaxGrad, []string{"y", "dy", "dx"}, b.f32(y, op), b.f32(dy, op), b.f32(dx, op))
}

// logSoftmaxGradRow sets dx from y = logsoftmax(x) and dy for one row.
func logSoftmaxGradRow(dx, y, dy []float32) {
	dx, dy = dx[:len(y)], dy[:len(y)]
	var sum float64
	for _, v := range dy {
		sum += float64(v)
	}
	for j, v := range y {
		dx[j] = float32(float64(dy[j]) - math.Exp(float64(v))*sum)
	}
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
	task := ceTasks.get()
	*task = ceTask{loss: l.f32, x: x.f32, targets: t.i32, v: v, ignore: ignoreIndex}
	if g != nil {
		task.grad = g.f32
	}
	b.run(n, max(1, minGrain/max(v, 1)), task)
	ceTasks.put(task)
}

// ceTask computes the loss, and the gradient unless grad is nil, of rows
// of v logits.
type ceTask struct {
	loss, grad, x []float32
	targets       []int32
	v             int
	ignore        int32
}

var ceTasks taskPool[ceTask]

func (t *ceTask) run(lo, hi int) {
	v := t.v
	for i := lo; i < hi; i++ {
		tg := t.targets[i]
		var gr []float32
		if t.grad != nil {
			gr = t.grad[i*v : (i+1)*v]
		}
		if tg == t.ignore {
			t.loss[i] = 0
			clear(gr)
			continue
		}
		xr := t.x[i*v : (i+1)*v]
		if gr == nil {
			m, ls := logSumExp(xr)
			t.loss[i] = float32(ls + (m - float64(xr[tg])))
			continue
		}
		// The gradient row holds e^(x-m), from the vector exponential
		// (1 ulp), summed in float64, then scaled into softmax(x).
		m := rowMax(xr)
		for j, z := range xr {
			gr[j] = z - m
		}
		expVec(gr, gr)
		var sum float64
		for _, e := range gr {
			sum += float64(e)
		}
		ls := math.Log(sum)
		t.loss[i] = float32(ls + float64(m) - float64(xr[tg]))
		inv := float32(1 / sum)
		for j := range gr {
			gr[j] *= inv
		}
		gr[tg] -= 1
	}
}
