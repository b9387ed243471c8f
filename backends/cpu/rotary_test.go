package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

type rotaryCase struct {
	shape  []int // [..., T, d]
	offset int
}

// rotaryTheta returns torchscale's frequencies 10000^(-i/(d/2-1)) (all 1
// when d = 2).
func rotaryTheta(d int) []float32 {
	th := make([]float32, d/2)
	for i := range th {
		if d/2 > 1 {
			th[i] = float32(math.Pow(10000, -float64(i)/float64(d/2-1)))
		} else {
			th[i] = 1
		}
	}
	return th
}

// rotaryRef rotates in float64 by the float32 angle the kernel uses.
func rotaryRef(c rotaryCase, x []float64, theta []float32, inverse bool) []float64 {
	T, d := c.shape[len(c.shape)-2], c.shape[len(c.shape)-1]
	y := make([]float64, len(x))
	for r := range len(x) / d {
		t := r % T
		for i := range d / 2 {
			phi := float64(float32(c.offset+t) * theta[i])
			if inverse {
				phi = -phi
			}
			a, b := x[r*d+2*i], x[r*d+2*i+1]
			y[r*d+2*i] = a*math.Cos(phi) - b*math.Sin(phi)
			y[r*d+2*i+1] = b*math.Cos(phi) + a*math.Sin(phi)
		}
	}
	return y
}

func TestRotary(t *testing.T) {
	cases := []rotaryCase{
		{shape: []int{2, 3, 7, 8}},
		{shape: []int{2, 13, 4}, offset: 5},
		{shape: []int{5, 2}, offset: 4093},
		{shape: []int{3, 0, 6}, offset: 2},
		{shape: []int{4, 300, 64}, offset: 1}, // rows split over threads
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			n := api.Shape(c.shape).NumElements()
			d := c.shape[len(c.shape)-1]
			x := seqVals(rand.New(rand.NewPCG(uint64(i), 6)), n, -1, 1)
			theta := rotaryTheta(d)
			for _, inverse := range []bool{false, true} {
				name := fmt.Sprintf("%v_offset%d_inverse%v", c.shape, c.offset, inverse)
				want := rotaryRef(c, x, theta, inverse)
				dst := seqNaN(b, c.shape...)
				b.Rotary(dst, seqUp(b, x, c.shape...), theta, c.offset, inverse)
				seqCheck(t, name, seqDown(dst), want, 1e-6)
				inPlace := seqUp(b, x, c.shape...)
				b.Rotary(inPlace, inPlace, theta, c.offset, inverse)
				if !seqBits(seqDown(inPlace), seqDown(dst)) {
					t.Errorf("%s: in place differs from out of place", name)
				}
			}
		}
	})
}

// TestRotaryGrad checks that the inverse rotation of dy is the gradient of
// <dy, rotate(x)> by finite differences.
func TestRotaryGrad(t *testing.T) {
	c := rotaryCase{shape: []int{2, 5, 6}, offset: 3}
	r := rand.New(rand.NewPCG(8, 6))
	n := api.Shape(c.shape).NumElements()
	x, dy := seqVals(r, n, -1, 1), seqVals(r, n, -1, 1)
	theta := rotaryTheta(6)
	want := seqFD(func(in [][]float64) []float64 { return rotaryRef(c, in[0], theta, false) }, [][]float64{x}, dy, 0)
	b := cpu.New(api.BackendOptions{Threads: 1})
	dx := seqNaN(b, c.shape...)
	b.Rotary(dx, seqUp(b, dy, c.shape...), theta, c.offset, true)
	seqCheck(t, "dx", seqDown(dx), want[0], seqGradTol)
}

func TestRotaryMisuse(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	x := b.Alloc(api.F32, 2, 3, 4)
	seqWantPanic(t, "odd d", api.ErrShape, func() { y := b.Alloc(api.F32, 3, 5); b.Rotary(y, y, []float32{1, 1}, 0, false) })
	seqWantPanic(t, "theta of d/2+1", api.ErrShape, func() { b.Rotary(x, x, []float32{1, 1, 1}, 0, false) })
	seqWantPanic(t, "dst of another shape", api.ErrShape, func() { b.Rotary(b.Alloc(api.F32, 2, 4, 4), x, []float32{1, 1}, 0, false) })
	seqWantPanic(t, "rank 1", api.ErrShape, func() { y := b.Alloc(api.F32, 4); b.Rotary(y, y, []float32{1, 1}, 0, false) })
	seqWantPanic(t, "negative offset", api.ErrOutOfRange, func() { b.Rotary(x, x, []float32{1, 1}, -1, false) })
}
