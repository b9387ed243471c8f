package cpu

import (
	"fmt"

	"github.com/densessm/densessm/api"
)

// Broadcasting kernels: Binary and its gradient partner SumTo.
//
// Both describe the iteration over the output (or input) as a list of axes
// with one stride per operand, drop size-1 axes and merge neighbouring axes
// that every operand walks contiguously, so that the common cases (same
// shape, a row vector added to every row, a scalar) become one or two flat
// loops.

// maxAxes is the number of axes the broadcast bookkeeping of a decode-path
// kernel keeps in fixed-size arrays; tensors of higher rank take the same
// paths with heap-allocated storage.
const maxAxes = 8

// Binary sets dst = a op b with NumPy broadcasting.
func (b *Backend) Binary(op api.BinaryOp, dst, a, c api.Tensor) {
	const name = "binary"
	d, x, y := b.f32(dst, name), b.f32(a, name), b.f32(c, name)
	if op < api.OpAdd || op > api.OpDiv {
		api.Panicf(api.ErrUnsupported, "binary op %d", op)
	}
	var buf [maxAxes]int
	if out, ok := broadcastShape(buf[:0], x.shape, y.shape); !ok || !d.shape.Equal(out) {
		binaryShapePanic(op, d, x, y)
	}
	if len(d.f32) == 0 {
		return
	}
	t := binaryTasks.get()
	t.op, t.dst, t.x, t.y = op, d.f32, x.f32, y.f32
	axes := mergeAxes(t.buf[:0], d.shape, x.shape, y.shape)
	// The innermost axis is walked with stride 0 or 1 by each operand; the
	// outer ones are iterated as rows.
	t.inner = bcastAxis{size: 1}
	if len(axes) > 0 {
		t.inner, axes = axes[0], axes[1:]
	}
	t.axes = axes
	b.run(len(d.f32)/t.inner.size, max(1, minGrain/t.inner.size), t)
	binaryTasks.put(t)
}

// broadcastShape returns the NumPy broadcast of a and b (see
// api.BroadcastShapes), stored in dst when its capacity suffices, and
// whether the shapes broadcast at all.
func broadcastShape(dst []int, a, b api.Shape) ([]int, bool) {
	n := max(len(a), len(b))
	out := dst[:0]
	if cap(out) < n {
		out = make([]int, n)
	}
	out = out[:n]
	for i := 1; i <= n; i++ {
		da, db := 1, 1
		if i <= len(a) {
			da = a[len(a)-i]
		}
		if i <= len(b) {
			db = b[len(b)-i]
		}
		switch {
		case da == db || db == 1:
			out[n-i] = da
		case da == 1:
			out[n-i] = db
		default:
			return nil, false
		}
	}
	return out, true
}

// binaryShapePanic panics with the error of Binary's shape check, which
// failed for dst = a op b.
func binaryShapePanic(op api.BinaryOp, d, x, y *Tensor) {
	const name = "binary"
	out, err := api.BroadcastShapes(x.shape, y.shape)
	if err != nil {
		panic(fmt.Errorf("%s %v: %w", name, op, err))
	}
	api.Panicf(api.ErrShape, "%s %v: dst has shape %v, want the broadcast %v of %v and %v", name, op, d.shape, out, x.shape, y.shape)
}

// binaryTask computes dst = x op y over rows of inner.size outputs, the
// rows walked along axes (see mergeAxes), whose storage is buf up to
// maxAxes axes.
type binaryTask struct {
	op        api.BinaryOp
	dst, x, y []float32
	inner     bcastAxis
	axes      []bcastAxis
	buf       [maxAxes]bcastAxis
}

var binaryTasks taskPool[binaryTask]

func (t *binaryTask) run(lo, hi int) {
	var it axisIter
	it.seek(t.axes, lo)
	n, op := t.inner.size, t.op
	for r := lo; r < hi; r++ {
		dd := t.dst[r*n : (r+1)*n]
		switch {
		case t.inner.stride[0] == 1 && t.inner.stride[1] == 1:
			binaryVV(op, dd, t.x[it.off[0]:], t.y[it.off[1]:])
		case t.inner.stride[0] == 1:
			binaryVS(op, dd, t.x[it.off[0]:], t.y[it.off[1]])
		case t.inner.stride[1] == 1:
			binarySV(op, dd, t.x[it.off[0]], t.y[it.off[1]:])
		default:
			dd[0] = binaryOne(op, t.x[it.off[0]], t.y[it.off[1]])
		}
		it.next(t.axes)
	}
}

// bcastAxis is one axis of a broadcast iteration: its size, and the stride
// each of up to two operands walks it with (0 for a broadcast axis).
type bcastAxis struct {
	size   int
	stride [2]int
}

// mergeAxes appends to dst[:0], and returns, the axes of iterating over
// shape out, where operand i has shape ins[i] broadcast to out, innermost
// first: size-1 axes are dropped and an axis is merged into the one inside
// it when every operand walks both contiguously (including both with
// stride 0).
func mergeAxes(dst []bcastAxis, out api.Shape, ins ...api.Shape) []bcastAxis {
	axes := dst[:0]
	var contig [2]int // each operand's row-major stride at the current axis
	for i := range contig {
		contig[i] = 1
	}
	for k := 1; k <= len(out); k++ {
		size := out[len(out)-k]
		ax := bcastAxis{size: size}
		for i, in := range ins {
			if k <= len(in) && in[len(in)-k] != 1 {
				ax.stride[i] = contig[i]
				contig[i] *= in[len(in)-k]
			}
		}
		if size == 1 {
			continue
		}
		if n := len(axes); n > 0 {
			last := &axes[n-1]
			if ax.stride[0] == last.stride[0]*last.size && ax.stride[1] == last.stride[1]*last.size {
				last.size *= size
				continue
			}
		}
		axes = append(axes, ax)
	}
	return axes
}

// axisIter walks the rows of a broadcast iteration, keeping each operand's
// offset of the current row. Its index storage is on the stack up to
// maxAxes axes.
type axisIter struct {
	small [maxAxes]int // index along each axis (innermost first)
	big   []int        // the same, for more than maxAxes axes
	off   [2]int       // offset of each operand
}

// index returns the index storage for n axes.
func (it *axisIter) index(n int) []int {
	if n <= maxAxes {
		return it.small[:n]
	}
	if cap(it.big) < n {
		it.big = make([]int, n)
	}
	return it.big[:n]
}

// seek positions the iterator at row r.
func (it *axisIter) seek(axes []bcastAxis, r int) {
	idx := it.index(len(axes))
	it.off = [2]int{}
	for k, ax := range axes {
		i := r % ax.size
		r /= ax.size
		idx[k] = i
		it.off[0] += i * ax.stride[0]
		it.off[1] += i * ax.stride[1]
	}
}

// next advances the iterator by one row (like an odometer).
func (it *axisIter) next(axes []bcastAxis) {
	idx := it.index(len(axes))
	for k, ax := range axes {
		it.off[0] += ax.stride[0]
		it.off[1] += ax.stride[1]
		if idx[k]++; idx[k] < ax.size {
			return
		}
		idx[k] = 0
		it.off[0] -= ax.size * ax.stride[0]
		it.off[1] -= ax.size * ax.stride[1]
	}
}

// binaryOne returns x op y.
func binaryOne(op api.BinaryOp, x, y float32) float32 {
	switch op {
	case api.OpAdd:
		return x + y
	case api.OpSub:
		return x - y
	case api.OpMul:
		return x * y
	}
	return x / y
}

// binaryVV sets d[i] = x[i] op y[i]. The whole blocks of eight go through
// a SIMD kernel where there is one (binaryVVFast), which gives the same
// bits as the loops below.
func binaryVV(op api.BinaryOp, d, x, y []float32) {
	x, y = x[:len(d)], y[:len(d)]
	if n := binaryVVFast(op, d, x, y); n > 0 {
		d, x, y = d[n:], x[n:], y[n:]
	}
	switch op {
	case api.OpAdd:
		for i := range d {
			d[i] = x[i] + y[i]
		}
	case api.OpSub:
		for i := range d {
			d[i] = x[i] - y[i]
		}
	case api.OpMul:
		for i := range d {
			d[i] = x[i] * y[i]
		}
	case api.OpDiv:
		for i := range d {
			d[i] = x[i] / y[i]
		}
	}
}

// binaryVS sets d[i] = x[i] op s.
func binaryVS(op api.BinaryOp, d, x []float32, s float32) {
	x = x[:len(d)]
	switch op {
	case api.OpAdd:
		for i, v := range x {
			d[i] = v + s
		}
	case api.OpSub:
		for i, v := range x {
			d[i] = v - s
		}
	case api.OpMul:
		for i, v := range x {
			d[i] = v * s
		}
	case api.OpDiv:
		for i, v := range x {
			d[i] = v / s
		}
	}
}

// binarySV sets d[i] = s op y[i].
func binarySV(op api.BinaryOp, d []float32, s float32, y []float32) {
	y = y[:len(d)]
	switch op {
	case api.OpAdd:
		for i, v := range y {
			d[i] = s + v
		}
	case api.OpSub:
		for i, v := range y {
			d[i] = s - v
		}
	case api.OpMul:
		for i, v := range y {
			d[i] = s * v
		}
	case api.OpDiv:
		for i, v := range y {
			d[i] = s / v
		}
	}
}

// sumBlock is the number of adjacent outputs SumTo accumulates at a time
// (in float64, on the stack) when the innermost axis is kept.
const sumBlock = 128

// SumTo sets dst to the sum of x over the axes that broadcasting dst to x's
// shape expands. Sums are accumulated in float64.
func (b *Backend) SumTo(dst, x api.Tensor) {
	const op = "sumto"
	d, s := b.f32(dst, op), b.f32(x, op)
	if !sumToShapes(d.shape, s.shape) {
		api.Panicf(api.ErrShape, "%s: dst %v does not broadcast to x %v", op, d.shape, s.shape)
	}
	// One iteration over x with dst's strides (operand 0) and x's own
	// (operand 1): an axis dst lacks, or has as 1, has dst stride 0 and is
	// summed over.
	axes := mergeAxes(nil, s.shape, d.shape, s.shape)
	var kept, summed []bcastAxis // innermost first
	for _, ax := range axes {
		if ax.stride[0] == 0 {
			summed = append(summed, ax)
		} else {
			kept = append(kept, ax)
		}
	}
	switch {
	case len(d.f32) == 0:
	case len(s.f32) == 0:
		b.Fill(dst, 0)
	case len(summed) == 0:
		copy(d.f32, s.f32)
	case len(axes) > 0 && axes[0].stride[0] == 0:
		b.sumInner(d.f32, s.f32, kept, summed)
	default:
		b.sumOuter(d.f32, s.f32, kept, summed)
	}
}

// sumToShapes reports whether dst broadcasts to x's shape: it may have
// fewer axes, and size 1 where x has any size, and leading axes of size 1
// beyond x's rank.
func sumToShapes(dst, x api.Shape) bool {
	for len(dst) > len(x) {
		if dst[0] != 1 {
			return false
		}
		dst = dst[1:]
	}
	for k := 1; k <= len(dst); k++ {
		if dd := dst[len(dst)-k]; dd != 1 && dd != x[len(x)-k] {
			return false
		}
	}
	return true
}

// sumInner is SumTo when the innermost axis of x is summed: each output is
// a sum of contiguous runs of x. kept and summed are the merged axes,
// innermost first; the first summed axis is x's innermost.
func (b *Backend) sumInner(d, x []float32, kept, summed []bcastAxis) {
	run, outer := summed[0].size, summed[1:]
	runs := len(x) / len(d) / run
	b.parallelGrain(len(d), max(1, minGrain/(runs*run)), func(lo, hi int) {
		var out, in axisIter
		out.seek(kept, lo)
		for o := lo; o < hi; o++ {
			var s float64
			in.seek(outer, 0)
			for range runs {
				base := out.off[1] + in.off[1]
				for _, v := range x[base : base+run] {
					s += float64(v)
				}
				in.next(outer)
			}
			d[o] = float32(s)
			out.next(kept)
		}
	})
}

// sumOuter is SumTo when the innermost axis of x is kept: blocks of up to
// sumBlock adjacent outputs are accumulated together over the summed axes.
func (b *Backend) sumOuter(d, x []float32, kept, summed []bcastAxis) {
	width, outer := kept[0].size, kept[1:]
	perRow := (width + sumBlock - 1) / sumBlock
	rows := len(d) / width
	reps := len(x) / len(d)
	b.parallelGrain(rows*perRow, max(1, minGrain/(reps*min(width, sumBlock))), func(lo, hi int) {
		var acc [sumBlock]float64
		var out, in axisIter
		for u := lo; u < hi; u++ {
			row, blk := u/perRow, u%perRow
			j0 := blk * sumBlock
			w := min(sumBlock, width-j0)
			out.seek(outer, row)
			in.seek(summed, 0)
			a := acc[:w]
			clear(a)
			for range reps {
				base := out.off[1] + in.off[1] + j0
				for j, v := range x[base : base+w] {
					a[j] += float64(v)
				}
				in.next(summed)
			}
			dst := d[row*width+j0 : row*width+j0+w]
			for j, v := range a {
				dst[j] = float32(v)
			}
		}
	})
}
