package cpu

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// Layout kernels: Permute, Slice and SetSlice. They move elements of any
// dtype: F32 and I32 tensors element by element, the byte-stored dtypes as
// bytes (with the element's bytes as one more, innermost axis).

// Permute sets dst to src with its axes reordered: dst axis i is src axis
// perm[i].
func (b *Backend) Permute(dst, src api.Tensor, perm ...int) {
	const op = "permute"
	d, s := b.own(dst), b.own(src)
	if d.dtype != s.dtype {
		api.Panicf(api.ErrDType, "%s: dst is %s, src is %s", op, d.dtype, s.dtype)
	}
	blockDType(op, s)
	api.CheckPermute(op, d.shape, s.shape, perm)
	if d.numel() == 0 {
		return
	}
	switch d.dtype {
	case api.F32:
		permuteElems(b, d.f32, s.f32, permuteAxes(s.shape, perm))
	case api.I32:
		permuteElems(b, d.i32, s.i32, permuteAxes(s.shape, perm))
	default:
		// Bytes, with an innermost axis over the bytes of one element.
		shape := append(slices.Clone(s.shape), d.dtype.Size())
		perm = append(slices.Clone(perm), len(s.shape))
		permuteElems(b, d.raw, s.raw, permuteAxes(shape, perm))
	}
}

// permuteAxes returns the axes of walking dst (the permuted shape) in
// order, innermost first, each with its stride in src (in stride[0]):
// size-1 axes are dropped and axes that src also walks contiguously are
// merged.
func permuteAxes(shape api.Shape, perm []int) []bcastAxis {
	strides := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = acc
		acc *= shape[i]
	}
	var axes []bcastAxis
	for i := len(perm) - 1; i >= 0; i-- {
		size, stride := shape[perm[i]], strides[perm[i]]
		if size == 1 {
			continue
		}
		if n := len(axes); n > 0 && stride == axes[n-1].stride[0]*axes[n-1].size {
			axes[n-1].size *= size
			continue
		}
		axes = append(axes, bcastAxis{size: size, stride: [2]int{stride, 0}})
	}
	return axes
}

// permuteElems fills d in order from s walked along axes (innermost first,
// src strides in stride[0]): runs of the innermost axis are copied
// directly when src holds them contiguously, and gathered otherwise.
func permuteElems[T any](b *Backend, d, s []T, axes []bcastAxis) {
	inner := bcastAxis{size: 1, stride: [2]int{1, 0}}
	if len(axes) > 0 {
		inner, axes = axes[0], axes[1:]
	}
	n, step := inner.size, inner.stride[0]
	b.parallelGrain(len(d)/n, max(1, minGrain/n), func(lo, hi int) {
		var it axisIter
		it.seek(axes, lo)
		for r := lo; r < hi; r++ {
			out := d[r*n : (r+1)*n]
			if step == 1 {
				copy(out, s[it.off[0]:it.off[0]+n])
			} else {
				src := s[it.off[0]:]
				for j := range out {
					out[j] = src[j*step]
				}
			}
			it.next(axes)
		}
	})
}

// Slice copies the window src[..., start:start+n, ...] along axis into dst
// (n = dst's size on axis).
func (b *Backend) Slice(dst, src api.Tensor, axis, start int) {
	d, s := b.own(dst), b.own(src)
	b.window("slice", s, d, axis, start, false)
}

// SetSlice copies src into the window dst[..., start:start+n, ...] along
// axis (n = src's size on axis), leaving the rest of dst as it was.
func (b *Backend) SetSlice(dst, src api.Tensor, axis, start int) {
	d, s := b.own(dst), b.own(src)
	b.window("set slice", d, s, axis, start, true)
}

// window moves data between whole, the tensor the window lies in, and
// part, a tensor with the window's shape: out of whole (Slice) or, when
// set, into it (SetSlice).
func (b *Backend) window(op string, whole, part *Tensor, axis, start int, set bool) {
	blockDType(op, whole)
	if whole.dtype != part.dtype {
		api.Panicf(api.ErrDType, "%s: %s tensor and %s window", op, whole.dtype, part.dtype)
	}
	api.CheckWindow(op, whole.shape, part.shape, axis, start)
	n, size := part.shape[axis], whole.shape[axis]
	// Each of the outer rows holds one contiguous run of the window.
	esize := whole.dtype.Size()
	inner := api.Shape(whole.shape[axis+1:]).NumElements() * esize
	outer := api.Shape(whole.shape[:axis]).NumElements()
	length := n * inner
	if length == 0 || outer == 0 {
		return
	}
	t := windowTasks.get()
	*t = windowTask{whole: whole.bytes(), part: part.bytes(), size: size, start: start, inner: inner, length: length, set: set}
	b.run(outer, max(1, 4*minGrain/length), t)
	windowTasks.put(t)
}

// windowTask moves, for each outer row o, the length bytes of the window
// from whole (rows of size*inner bytes, the window starting start*inner
// bytes in) to part (rows of length bytes), or back when set.
type windowTask struct {
	whole, part                []byte
	size, start, inner, length int
	set                        bool
}

var windowTasks taskPool[windowTask]

func (t *windowTask) run(lo, hi int) {
	for o := lo; o < hi; o++ {
		w0 := (o*t.size + t.start) * t.inner
		wr := t.whole[w0 : w0+t.length]
		pr := t.part[o*t.length : (o+1)*t.length]
		if t.set {
			copy(wr, pr)
		} else {
			copy(pr, wr)
		}
	}
}

// blockDType panics when t's elements are stored in blocks (Q8_0): the
// layout kernels move whole elements only.
func blockDType(op string, t *Tensor) {
	if t.dtype.Block() != 1 {
		api.Panicf(api.ErrDType, "%s: a %s tensor %v is stored in blocks and cannot be rearranged", op, t.dtype, t.shape)
	}
}
