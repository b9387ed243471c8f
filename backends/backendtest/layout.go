package backendtest

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	register("Permute", testPermute)
	register("Slice", testSlice)
}

// refPermute reorders the axes of src (elements of size bytes each): dst
// axis i is src axis perm[i].
func refPermute(src []byte, shape, perm []int, size int) (dst []byte, dshape []int) {
	dshape = make([]int, len(perm))
	for i, p := range perm {
		dshape[i] = shape[p]
	}
	st := stridesOf(shape)
	dst = make([]byte, len(src))
	coords := make([]int, len(perm))
	for j := range numel(dshape) {
		unravel(coords, dshape, j)
		s := 0
		for i, p := range perm {
			s += coords[i] * st[p]
		}
		copy(dst[j*size:(j+1)*size], src[s*size:(s+1)*size])
	}
	return dst, dshape
}

// allPerms returns every permutation of 0..n-1.
func allPerms(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range allPerms(n - 1) {
		for pos := 0; pos <= len(p); pos++ {
			q := append(append(append([]int(nil), p[:pos]...), n-1), p[pos:]...)
			out = append(out, q)
		}
	}
	return out
}

func testPermute(t *testing.T, b api.Backend) {
	r := newRand(51)
	type permCase struct{ shape, perm []int }
	var cases []permCase
	for _, p := range allPerms(2) {
		cases = append(cases, permCase{[]int{5, 7}, p})
	}
	for _, p := range allPerms(3) {
		cases = append(cases, permCase{[]int{3, 4, 5}, p})
	}
	for _, p := range [][]int{{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}, {0, 1, 2, 3}, {2, 0, 3, 1}} {
		cases = append(cases, permCase{[]int{2, 3, 4, 5}, p})
	}
	cases = append(cases,
		permCase{[]int{1, 6, 1}, []int{2, 1, 0}},
		permCase{[]int{3, 0, 2}, []int{2, 0, 1}},
		permCase{[]int{17, 33, 9}, []int{2, 0, 1}},
		permCase{[]int{4, 31, 2, 16}, []int{0, 2, 1, 3}},
	)
	for _, d := range storageDTypes {
		for _, c := range cases {
			runSub(t, fmt.Sprintf("%v/%s/%v", d, shapeName(c.shape), c.perm), func(t *testing.T) {
				src := randBytes(r, numel(c.shape)*d.Size())
				want, ds := refPermute(src, c.shape, c.perm, d.Size())
				dst := uploadRaw(b, d, randBytes(r, len(src)), ds...)
				b.Permute(dst, uploadRaw(b, d, src, c.shape...), c.perm...)
				checkBytes(t, "permute", downloadRaw(dst), want)
			})
		}
	}
}

// sliceWindow maps each element of a window of shape win, starting at
// start along axis of a tensor of shape full, to its flat index in the
// full tensor.
func sliceWindow(full, win []int, axis, start int) []int {
	st := stridesOf(full)
	coords := make([]int, len(win))
	idx := make([]int, numel(win))
	for j := range idx {
		unravel(coords, win, j)
		coords[axis] += start
		for i, c := range coords {
			idx[j] += c * st[i]
		}
	}
	return idx
}

func testSlice(t *testing.T, b api.Backend) {
	r := newRand(52)
	full := []int{4, 5, 6}
	type window struct{ axis, start, n int }
	var windows []window
	for axis, size := range full {
		windows = append(windows,
			window{axis, 0, size},     // everything
			window{axis, 0, 1},        // the first
			window{axis, size - 1, 1}, // the last
			window{axis, 1, size - 2}, // the middle
			window{axis, size, 0},     // empty, at the end
			window{axis, 2, 0},        // empty, inside
			window{axis, 1, size - 1}, // up to the end
		)
	}
	for _, d := range []api.DType{api.F32, api.I32, api.BF16, api.I64} {
		for _, w := range windows {
			win := append([]int(nil), full...)
			win[w.axis] = w.n
			idx := sliceWindow(full, win, w.axis, w.start)
			size := d.Size()
			runSub(t, fmt.Sprintf("%v/axis%d/start%d/n%d", d, w.axis, w.start, w.n), func(t *testing.T) {
				src := randBytes(r, numel(full)*size)
				want := make([]byte, numel(win)*size)
				for j, i := range idx {
					copy(want[j*size:(j+1)*size], src[i*size:(i+1)*size])
				}
				srcT := uploadRaw(b, d, src, full...)
				dst := uploadRaw(b, d, randBytes(r, len(want)), win...)
				b.Slice(dst, srcT, w.axis, w.start)
				checkBytes(t, "slice", downloadRaw(dst), want)

				// SetSlice writes the window back into a different tensor
				// and leaves everything outside it alone.
				base := randBytes(r, len(src))
				part := randBytes(r, len(want))
				wantSet := append([]byte(nil), base...)
				for j, i := range idx {
					copy(wantSet[i*size:(i+1)*size], part[j*size:(j+1)*size])
				}
				into := uploadRaw(b, d, base, full...)
				b.SetSlice(into, uploadRaw(b, d, part, win...), w.axis, w.start)
				checkBytes(t, "setslice", downloadRaw(into), wantSet)
			})
		}
	}
	// Large enough to be split over threads, on the middle axis.
	runSub(t, "large", func(t *testing.T) {
		full, win := []int{33, 70, 17}, []int{33, 41, 17}
		src := f32(randVals(r, numel(full), -1, 1))
		idx := sliceWindow(full, win, 1, 20)
		want := make([]float64, len(idx))
		for j, i := range idx {
			want[j] = src[i]
		}
		dst := b.Alloc(api.F32, win...)
		b.Slice(dst, upload(b, src, full...), 1, 20)
		checkExact(t, "slice", download(dst), want)
		into := b.Alloc(api.F32, full...)
		b.SetSlice(into, dst, 1, 20)
		wantSet := make([]float64, len(src))
		for _, i := range idx {
			wantSet[i] = src[i]
		}
		checkExact(t, "setslice", download(into), wantSet)
	})
}
