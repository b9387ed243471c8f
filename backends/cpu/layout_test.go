package cpu

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// refPermuteBytes permutes src (elements of size bytes, shape shape) the
// slow way: dst axis i is src axis perm[i].
func refPermuteBytes(src []byte, shape, perm []int, size int) []byte {
	ds := make([]int, len(perm))
	for i, p := range perm {
		ds[i] = shape[p]
	}
	st := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i], acc = acc, acc*shape[i]
	}
	dst := make([]byte, len(src))
	for j := 0; j < len(src)/size; j++ {
		s, rest := 0, j
		for i := len(ds) - 1; i >= 0; i-- {
			s += rest % ds[i] * st[perm[i]]
			rest /= ds[i]
		}
		copy(dst[j*size:(j+1)*size], src[s*size:(s+1)*size])
	}
	return dst
}

// TestPermuteSplits permutes tensors large enough to be split across
// threads, with contiguous and strided inner runs, for an element-wise
// dtype (F32, I32) and two byte-stored ones (F16, I64).
func TestPermuteSplits(t *testing.T) {
	cases := []struct{ shape, perm []int }{
		{[]int{40, 50, 30}, []int{2, 0, 1}},
		{[]int{40, 50, 30}, []int{1, 0, 2}},
		{[]int{6, 1, 70, 80}, []int{3, 1, 0, 2}},
		{[]int{300, 200}, []int{1, 0}},
	}
	r := rand.New(rand.NewPCG(6, 1))
	for _, threads := range testThreads {
		be := New(api.BackendOptions{Threads: threads})
		for _, c := range cases {
			for _, dt := range []api.DType{api.F32, api.I32, api.F16, api.I64} {
				n := api.Shape(c.shape).NumElements() * dt.Size()
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				ds := make([]int, len(c.perm))
				for i, p := range c.perm {
					ds[i] = c.shape[p]
				}
				st, dt2 := be.Alloc(dt, c.shape...), be.Alloc(dt, ds...)
				be.Upload(st, src)
				be.Permute(dt2, st, c.perm...)
				got := make([]byte, n)
				be.Download(got, dt2)
				if !bytes.Equal(got, refPermuteBytes(src, c.shape, c.perm, dt.Size())) {
					t.Errorf("threads=%d %s%v perm %v: wrong result", threads, dt, c.shape, c.perm)
				}
			}
		}
	}
}

// TestSliceRoundTrip slices windows out of a large tensor along each axis,
// across threads, and writes them back with SetSlice into a shifted copy,
// which must change in the window and nowhere else.
func TestSliceRoundTrip(t *testing.T) {
	shape := []int{30, 100, 40}
	r := rand.New(rand.NewPCG(6, 2))
	for _, threads := range testThreads {
		be := New(api.BackendOptions{Threads: threads})
		src := randT(be, r, -1, 1, shape...)
		for axis := range shape {
			start, n := shape[axis]/3, shape[axis]/2
			win := append([]int(nil), shape...)
			win[axis] = n
			part := nanT(be, win...)
			be.Slice(part, src, axis, start)
			want := make([]float64, len(part.f32))
			for i := range want {
				// Map window index i to the source index.
				idx, rest, stride := 0, i, 1
				for k := len(win) - 1; k >= 0; k-- {
					c := rest % win[k]
					rest /= win[k]
					if k == axis {
						c += start
					}
					idx += c * stride
					stride *= shape[k]
				}
				want[i] = float64(src.f32[idx])
			}
			name := fmt.Sprintf("threads=%d axis=%d", threads, axis)
			checkClose(t, name+" slice", part.f32, want, 0)

			back := newT(be, src.f32, shape...)
			be.Affine(back, back, 1, 1) // differ from src everywhere
			be.SetSlice(back, part, axis, start)
			be.Slice(part, back, axis, start)
			checkClose(t, name+" set slice", part.f32, want, 0)
			restored := 0 // elements of back equal to src again: the window only
			for i, v := range back.f32 {
				if v == src.f32[i] {
					restored++
				}
			}
			if restored != len(part.f32) {
				t.Errorf("%s: set slice wrote %d elements, want %d", name, restored, len(part.f32))
			}
		}
	}
}
