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

// Binary sets dst = a op b with NumPy broadcasting.
func (b *Backend) Binary(op api.BinaryOp, dst, a, c api.Tensor) {
	const name = "binary"
	d, x, y := b.f32(dst, name), b.f32(a, name), b.f32(c, name)
	if op < api.OpAdd || op > api.OpDiv {
		api.Panicf(api.ErrUnsupported, "binary op %d", op)
	}
	out, err := api.BroadcastShapes(x.shape, y.shape)
	if err != nil {
		panic(fmt.Errorf("%s %v: %w", name, op, err))
	}
	if !d.shape.Equal(out) {
		api.Panicf(api.ErrShape, "%s %v: dst has shape %v, want the broadcast %v of %v and %v", name, op, d.shape, out, x.shape, y.shape)
	}
	if len(d.f32) == 0 {
		return
	}
	axes := mergeAxes(out, x.shape, y.shape)
	// The innermost axis is walked with stride 0 or 1 by each operand; the
	// outer ones are iterated as rows.
	inner := bcastAxis{size: 1}
	if len(axes) > 0 {
		inner, axes = axes[0], axes[1:]
	}
	rows := len(d.f32) / inner.size
	b.parallelGrain(rows, max(1, minGrain/inner.size), func(lo, hi int) {
		var it axisIter
		it.seek(axes, lo)
		for r := lo; r < hi; r++ {
			o := r * inner.size
			dd := d.f32[o : o+inner.size]
			switch {
			case inner.stride[0] == 1 && inner.stride[1] == 1:
				binaryVV(op, dd, x.f32[it.off[0]:], y.f32[it.off[1]:])
			case inner.stride[0] == 1:
				binaryVS(op, dd, x.f32[it.off[0]:], y.f32[it.off[1]])
			case inner.stride[1] == 1:
				binarySV(op, dd, x.f32[it.off[0]], y.f32[it.off[1]:])
			default:
				dd[0] = binaryOne(op, x.f32[it.off[0]], y.f32[it.off[1]])
			}
			it.next(axes)
		}
	})
}

// bcastAxis is one axis of a broadcast iteration: its size, and the stride
// each of up to two operands walks it with (0 for a broadcast axis).
type bcastAxis struct {
	size   int
	stride [2]int
}

// mergeAxes returns the axes of iterating over shape out, where operand i
// has shape ins[i] broadcast to out, innermost first: size-1 axes are
// dropped and an axis is merged into the one inside it when every operand
// walks both contiguously (including both with stride 0).
func mergeAxes(out api.Shape, ins ...api.Shape) []bcastAxis {
	var axes []bcastAxis
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
// offset of the current row.
type axisIter struct {
	idx []int  // index along each axis (innermost first)
	off [2]int // offset of each operand
}

// seek positions the iterator at row r, reusing its index storage.
func (it *axisIter) seek(axes []bcastAxis, r int) {
	if cap(it.idx) < len(axes) {
		it.idx = make([]int, len(axes))
	}
	it.idx = it.idx[:len(axes)]
	it.off = [2]int{}
	for k, ax := range axes {
		i := r % ax.size
		r /= ax.size
		it.idx[k] = i
		it.off[0] += i * ax.stride[0]
		it.off[1] += i * ax.stride[1]
	}
}

// next advances the iterator by one row (like an odometer).
func (it *axisIter) next(axes []bcastAxis) {
	for k, ax := range axes {
		it.off[0] += ax.stride[0]
		it.off[1] += ax.stride[1]
		if it.idx[k]++; it.idx[k] < ax.size {
			return
		}
		it.idx[k] = 0
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

// binaryVV sets d[i] = x[i] op y[i].
func binaryVV(op api.BinaryOp, d, x, y []float32) {
	x, y = x[:len(d)], y[:len(d)]
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
	axes := mergeAxes(s.shape, d.shape, s.shape)
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
