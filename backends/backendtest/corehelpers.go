package backendtest

// Shared helpers of the core-op groups (elementwise, convert, broadcast,
// matmul, layout, norm, gather, misuse): subtests that survive a kernel
// panic, misuse checks, raw-byte tensors of any dtype, exact comparisons and
// row-major index arithmetic.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/densessm/densessm/api"
)

// storageDTypes lists every dtype a tensor can hold; the layout ops and Copy
// must move all of them.
var storageDTypes = []api.DType{api.F32, api.F16, api.BF16, api.I32, api.I64, api.F64, api.U8, api.I8, api.Bool}

// mustPanicWith fails t unless fn panics with an error value (not a Go
// runtime error) for which errors.Is holds for at least one of sentinels;
// with no sentinels, any such error will do.
func mustPanicWith(t *testing.T, what string, fn func(), sentinels ...error) {
	t.Helper()
	r := catchPanic(fn)
	if r == nil {
		t.Errorf("%s: no panic, want an error wrapping %v", what, sentinels)
		return
	}
	err, ok := r.(error)
	if !ok {
		t.Errorf("%s: panicked with %T %v, want an error wrapping %v", what, r, r, sentinels)
		return
	}
	var rt runtime.Error
	if errors.As(err, &rt) {
		t.Errorf("%s: Go runtime error %q, want an error wrapping %v", what, err, sentinels)
		return
	}
	if len(sentinels) == 0 {
		return
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Errorf("%s: panicked with %q, which wraps none of %v", what, err, sentinels)
}

// catchPanic runs fn and returns what it panicked with, or nil.
func catchPanic(fn func()) (r any) {
	defer func() { r = recover() }()
	fn()
	return nil
}

// numel returns the element count of shape (1 for a scalar).
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// stridesOf returns the row-major strides of shape, in elements.
func stridesOf(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// unravel writes the coordinates of flat index i in shape into coords.
func unravel(coords, shape []int, i int) {
	for k := len(shape) - 1; k >= 0; k-- {
		coords[k] = i % shape[k]
		i /= shape[k]
	}
}

// broadcastIndex maps flat index i of shape out to the flat index of the
// element of an input of shape in that NumPy broadcasting reads there
// (shapes aligned at their last axis, size-1 axes repeated).
func broadcastIndex(out, in []int, i int) int {
	j, stride := 0, 1
	for k := 1; k <= len(out); k++ {
		c := i % out[len(out)-k]
		i /= out[len(out)-k]
		if k <= len(in) {
			n := in[len(in)-k]
			if n != 1 {
				j += c * stride
			}
			stride *= n
		}
	}
	return j
}

// uploadRaw allocates a tensor of dtype d on b and uploads raw into it.
func uploadRaw(b api.Backend, d api.DType, raw []byte, shape ...int) api.Tensor {
	t := b.Alloc(d, shape...)
	b.Upload(t, raw)
	return t
}

// downloadRaw returns the little-endian bytes of t.
func downloadRaw(t api.Tensor) []byte {
	raw := make([]byte, t.Shape().NumElements()*t.DType().Size())
	t.Backend().Download(raw, t)
	return raw
}

// randBytes returns n random bytes.
func randBytes(r *rand.Rand, n int) []byte {
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	return raw
}

// uploadIDs puts int32 values into a new I32 tensor on b.
func uploadIDs(b api.Backend, ids []int32, shape ...int) api.Tensor {
	return api.FromInt32s(b, ids, shape...)
}

// filled returns n copies of v.
func filled(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// checkBytes fails t unless got and want are the same bytes.
func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d bytes, want %d", what, len(got), len(want))
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: first difference at byte %d: got %#02x, want %#02x", what, i, got[i], want[i])
			return
		}
	}
}

// checkExact fails t unless got equals want element by element: the same
// value, the same sign of zero, NaN where want is NaN.
func checkExact(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		same := g == w && math.Signbit(g) == math.Signbit(w) || math.IsNaN(g) && math.IsNaN(w)
		if !same {
			t.Errorf("%s: element %d is %v, want exactly %v", what, i, g, w)
			return
		}
	}
}

// le is the byte order of tensor uploads and downloads.
var le = binary.LittleEndian

// shapeName formats a shape for subtest names ("3x5", "scalar").
func shapeName(shape []int) string {
	if len(shape) == 0 {
		return "scalar"
	}
	s := fmt.Sprint(shape[0])
	for _, d := range shape[1:] {
		s += fmt.Sprintf("x%d", d)
	}
	return s
}

// checkRows applies checkRel to each row of d values separately, for ops
// that work row by row: a row of large values must not hide the errors of
// the others behind a large max-norm scale.
func checkRows(t *testing.T, what string, got, want []float64, d int, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	for r := 0; r < len(want); r += d {
		checkRel(t, fmt.Sprintf("%s, row %d", what, r/d), got[r:r+d], want[r:r+d], tol)
	}
}
