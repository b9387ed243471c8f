package cpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// testThreads are the thread counts the focused tests compare: 3 does not
// divide most sizes, so the static splits fall mid-row.
var testThreads = []int{1, 3}

// newT returns an F32 tensor of b holding v.
func newT(b *Backend, v []float32, shape ...int) *Tensor {
	return api.FromFloat32s(b, v, shape...).(*Tensor)
}

// randT returns an F32 tensor of b with values uniform in [lo, hi).
func randT(b *Backend, r *rand.Rand, lo, hi float64, shape ...int) *Tensor {
	v := make([]float32, api.Shape(shape).NumElements())
	for i := range v {
		v[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return newT(b, v, shape...)
}

// nanT returns an F32 tensor of b filled with NaN, a destination whose old
// contents must not show.
func nanT(b *Backend, shape ...int) *Tensor {
	t := b.Alloc(api.F32, shape...).(*Tensor)
	for i := range t.f32 {
		t.f32[i] = float32(math.NaN())
	}
	return t
}

// checkClose fails t unless got matches want within tol in the max-norm
// relative sense (max |got-want| / max |want|).
func checkClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var diff, scale float64
	worst := 0
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(g) != math.IsNaN(w) {
			t.Errorf("%s: element %d is %v, want %v", what, i, g, w)
			return
		}
		if d := math.Abs(g - w); d > diff {
			diff, worst = d, i
		}
		scale = max(scale, math.Abs(w))
	}
	if scale > 0 {
		diff /= scale
	}
	if diff > tol {
		t.Errorf("%s: relative error %.3g > %.1g (worst at %d: got %v, want %v)", what, diff, tol, worst, got[worst], want[worst])
	}
}

// checkSameBits fails t unless a and b hold the same float32 bits.
func checkSameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Errorf("%s: element %d differs: %v vs %v", what, i, a[i], b[i])
			return
		}
	}
}

// mustPanic fails t unless fn panics with an error wrapping sentinel.
func mustPanic(t *testing.T, what string, sentinel error, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		err, ok := r.(error)
		if !ok || !errors.Is(err, sentinel) {
			t.Errorf("%s: panicked with %v, want an error wrapping %v", what, r, sentinel)
		}
	}()
	fn()
}

// bcastIndex maps flat index i of shape out to the flat index NumPy
// broadcasting reads in an operand of shape in.
func bcastIndex(out, in []int, i int) int {
	j, stride := 0, 1
	for k := 1; k <= len(out); k++ {
		c := i % out[len(out)-k]
		i /= out[len(out)-k]
		if k <= len(in) {
			if n := in[len(in)-k]; n != 1 {
				j += c * stride
			}
			stride *= in[len(in)-k]
		}
	}
	return j
}
