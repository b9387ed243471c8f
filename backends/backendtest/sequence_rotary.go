package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	registerFused("rotary", "RotaryKernels", seqTestRotary)
	registerFused("rotary_misuse", "RotaryKernels", seqTestRotaryMisuse)
}

// seqRotaryCase is one Rotary configuration: x has shape Lead ++ [T, d].
type seqRotaryCase struct {
	lead   []int
	T, d   int
	offset int
	// randTheta draws the frequencies from U(0.5, 2) instead of RetNet's.
	randTheta bool
}

// shape returns the shape of x.
func (c seqRotaryCase) shape() []int { return append(append([]int(nil), c.lead...), c.T, c.d) }

func (c seqRotaryCase) String() string {
	return fmt.Sprintf("x%v_offset%d", c.shape(), c.offset)
}

var seqRotaryCases = []seqRotaryCase{
	{lead: []int{2, 3}, T: 7, d: 6, offset: 0},
	{lead: []int{2, 3}, T: 13, d: 4, offset: 5},
	{lead: nil, T: 13, d: 8, offset: 0},
	{lead: []int{3}, T: 5, d: 2, offset: 17},
	{lead: []int{1, 1}, T: 1, d: 2, offset: 0},
	// Positions above 2^12 and frequencies near 1: float32(offset+t)*theta
	// rounds by up to 2.4e-4 rad, so a backend that forms the angle in
	// float64 is caught.
	{lead: []int{2}, T: 7, d: 6, offset: 4093, randTheta: true},
	{lead: []int{2}, T: 0, d: 4, offset: 3}, // empty sequence
}

// seqRotaryTheta returns the case's frequencies: random ones, or RetNet's
// 10000^(-i/(d/2-1)) (one frequency, 1, when d = 2).
func seqRotaryTheta(c seqRotaryCase, seed uint64) []float32 {
	theta := make([]float32, c.d/2)
	r := newRand(seed)
	for i := range theta {
		switch {
		case c.randTheta:
			theta[i] = float32(0.5 + 1.5*r.Float64())
		case c.d/2 > 1:
			theta[i] = float32(math.Pow(10000, -float64(i)/float64(c.d/2-1)))
		default:
			theta[i] = 1
		}
	}
	return theta
}

// seqRotaryRef is the float64 reference of Rotary. The angle is the float32
// product float32(offset+t)*theta[i] the docs prescribe; the rotation itself
// is computed in float64.
func seqRotaryRef(c seqRotaryCase, x []float64, theta []float32, inverse bool) []float64 {
	out := make([]float64, len(x))
	rows := len(x) / max(1, c.T*c.d)
	for r := range rows {
		for t := range c.T {
			base := (r*c.T + t) * c.d
			for i := range c.d / 2 {
				phi := float64(float32(c.offset+t) * theta[i])
				if inverse {
					phi = -phi
				}
				sin, cos := math.Sincos(phi)
				a, b := x[base+2*i], x[base+2*i+1]
				out[base+2*i] = a*cos - b*sin
				out[base+2*i+1] = b*cos + a*sin
			}
		}
	}
	return out
}

// seqTestRotary checks Rotary and its inverse against seqRotaryRef, in
// place and not, inverse(rotate(x)) == x, and the inverse as the gradient.
func seqTestRotary(t *testing.T, be rotaryBackend) {
	for i, c := range seqRotaryCases {
		runSub(t, c.String(), func(t *testing.T) {
			shape := c.shape()
			n := api.Shape(shape).NumElements()
			theta := seqRotaryTheta(c, 850+uint64(i))
			x := f32(randVals(newRand(800+uint64(i)), n, -1, 1))
			xT := upload(be, x, shape...)
			for _, inverse := range []bool{false, true} {
				want := seqRotaryRef(c, x, theta, inverse)
				dst := seqGarbage(be, shape...)
				be.Rotary(dst, xT, theta, c.offset, inverse)
				checkRel(t, fmt.Sprintf("inverse=%t", inverse), download(dst), want, RelTol)
				inPlace := upload(be, x, shape...)
				be.Rotary(inPlace, inPlace, theta, c.offset, inverse)
				checkRel(t, fmt.Sprintf("inverse=%t in place", inverse), download(inPlace), want, RelTol)
			}

			// inverse(rotate(x)) == x.
			rot := be.Alloc(api.F32, shape...)
			be.Rotary(rot, xT, theta, c.offset, false)
			back := be.Alloc(api.F32, shape...)
			be.Rotary(back, rot, theta, c.offset, true)
			checkRel(t, "inverse(rotate(x))", download(back), x, RelTol)

			// The inverse rotation of dy is the gradient of sum(dy * rotate(x)).
			dy := f32(randVals(newRand(900+uint64(i)), n, -1, 1))
			f := func(in [][]float64) []float64 { return seqRotaryRef(c, in[0], theta, false) }
			want := numericGrad(f, [][]float64{x}, dy)[0]
			dx := seqGarbage(be, shape...)
			be.Rotary(dx, upload(be, dy, shape...), theta, c.offset, true)
			checkRel(t, "gradient", download(dx), want, GradTol)
		})
	}
}

// seqTestRotaryMisuse checks that mismatched shapes panic with ErrShape.
func seqTestRotaryMisuse(t *testing.T, be rotaryBackend) {
	x := be.Alloc(api.F32, 2, 7, 4)
	for _, m := range []struct {
		what string
		fn   func()
	}{
		{"odd d", func() { y := be.Alloc(api.F32, 2, 7, 5); be.Rotary(y, y, []float32{1, 1}, 0, false) }},
		{"theta of d/2+1", func() { be.Rotary(x, x, []float32{1, 1, 1}, 0, false) }},
		{"theta of d/2-1", func() { be.Rotary(x, x, []float32{1}, 0, true) }},
		{"dst of T+1", func() { be.Rotary(be.Alloc(api.F32, 2, 8, 4), x, []float32{1, 1}, 0, false) }},
		{"x of rank 1", func() { y := be.Alloc(api.F32, 4); be.Rotary(y, y, []float32{1, 1}, 0, false) }},
	} {
		mustPanicWith(t, m.what, m.fn, api.ErrShape)
	}
}
