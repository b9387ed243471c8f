package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestBinarySplits runs Binary on shapes large enough to be split across
// threads mid-row, for each inner-loop kind (both operands contiguous, a
// broadcast scalar on either side) and alternating broadcast axes.
func TestBinarySplits(t *testing.T) {
	cases := []struct{ a, b []int }{
		{[]int{40, 7, 90}, []int{40, 7, 90}},
		{[]int{40, 7, 90}, []int{7, 1}},
		{[]int{90}, []int{40, 7, 90}},
		{[]int{40, 1, 90}, []int{1, 70, 1}},
		{[]int{40, 70, 1}, []int{90}},
		{[]int{60000}, []int{}},
	}
	r := rand.New(rand.NewPCG(5, 1))
	for _, threads := range testThreads {
		be := New(api.BackendOptions{Threads: threads})
		for _, c := range cases {
			out, err := api.BroadcastShapes(c.a, c.b)
			if err != nil {
				t.Fatal(err)
			}
			x, y := randT(be, r, -2, 2, c.a...), randT(be, r, 0.5, 2, c.b...)
			for _, op := range api.BinaryOps() {
				d := nanT(be, out...)
				be.Binary(op, d, x, y)
				want := make([]float64, len(d.f32))
				for i := range want {
					u, v := float64(x.f32[bcastIndex(out, c.a, i)]), float64(y.f32[bcastIndex(out, c.b, i)])
					switch op {
					case api.OpAdd:
						want[i] = u + v
					case api.OpSub:
						want[i] = u - v
					case api.OpMul:
						want[i] = u * v
					case api.OpDiv:
						want[i] = u / v
					}
					want[i] = float64(float32(want[i])) // one float32 rounding
				}
				checkClose(t, fmt.Sprintf("threads=%d %v %v %v", threads, c.a, op, c.b), d.f32, want, 0)
			}
		}
	}
}

// TestSumToSplits runs SumTo on shapes whose outputs are split across
// threads, for both loop kinds (innermost axis summed or kept, the kept one
// wider than a block), and checks 1 and 3 threads give the same bits.
func TestSumToSplits(t *testing.T) {
	cases := []struct{ x, dst []int }{
		{[]int{30, 7, 130}, []int{7, 1}},
		{[]int{200, 300}, []int{300}},
		{[]int{9, 50, 2, 60}, []int{50, 1, 60}},
		{[]int{9, 50, 2, 60}, []int{9, 1, 2, 1}},
		{[]int{100000}, []int{1}},
		{[]int{3, 4}, []int{1, 1, 3, 1}},
	}
	r := rand.New(rand.NewPCG(5, 2))
	for _, c := range cases {
		var first []float32
		x := randT(New(api.BackendOptions{}), r, -1, 1, c.x...)
		want := make([]float64, api.Shape(c.dst).NumElements())
		for i, v := range x.f32 {
			want[bcastIndex(c.x, c.dst, i)] += float64(v)
		}
		for _, threads := range testThreads {
			be := New(api.BackendOptions{Threads: threads})
			d := nanT(be, c.dst...)
			be.SumTo(d, newT(be, x.f32, c.x...))
			checkClose(t, fmt.Sprintf("threads=%d %v to %v", threads, c.x, c.dst), d.f32, want, 1e-6)
			if first == nil {
				first = d.f32
			} else {
				checkSameBits(t, fmt.Sprintf("%v to %v, 1 vs 3 threads", c.x, c.dst), d.f32, first)
			}
		}
	}
}

// TestBinaryVVBits checks that binaryVV (SIMD blocks and Go tail) gives
// the bits of one float32 operation per element, for every length up to
// 70 (whole blocks of 32 and 8 and tails), in place too.
func TestBinaryVVBits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ops := map[api.BinaryOp]func(a, b float32) float32{
		api.OpAdd: func(a, b float32) float32 { return a + b },
		api.OpSub: func(a, b float32) float32 { return a - b },
		api.OpMul: func(a, b float32) float32 { return a * b },
		api.OpDiv: func(a, b float32) float32 { return a / b },
	}
	for op, f := range ops {
		for n := range 71 {
			x, y := randF32(r, n), randF32(r, n)
			d := make([]float32, n)
			binaryVV(op, d, x, y)
			for i := range d {
				if want := f(x[i], y[i]); math.Float32bits(d[i]) != math.Float32bits(want) {
					t.Fatalf("%v n=%d: d[%d] = %v, want %v", op, n, i, d[i], want)
				}
			}
			binaryVV(op, x, x, y) // in place
			for i := range d {
				if math.Float32bits(x[i]) != math.Float32bits(d[i]) {
					t.Fatalf("%v n=%d in place: x[%d] = %v, want %v", op, n, i, x[i], d[i])
				}
			}
		}
	}
}
