package memcount

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestSaturation(t *testing.T) {
	for _, tc := range []struct {
		got, want int64
	}{
		{Mul(3, 4, 5), 60},
		{Mul(), 1},
		{Mul(math.MaxInt64, 2), math.MaxInt64},
		{Mul(1<<32, 1<<31), math.MaxInt64},
		{Mul(1<<31, 1<<31), 1 << 62},
		{Mul(5, 0, math.MaxInt64), 0},
		{Mul(-1, 7), 0},
		{Add(1, 2, -5, 3), 6},
		{Add(math.MaxInt64, 1), math.MaxInt64},
		{Add(math.MaxInt64-1, 1), math.MaxInt64},
	} {
		if tc.got != tc.want {
			t.Errorf("got %d, want %d", tc.got, tc.want)
		}
	}
	var c Count
	c.Add(2, 3)
	c.AddN(10, 4)
	c.Add(math.MaxInt, math.MaxInt)
	if c.Value() != math.MaxInt64 {
		t.Errorf("count %d", c.Value())
	}
}

func TestSumMin(t *testing.T) {
	for m := -1; m <= 6; m++ {
		for n := -1; n <= 9; n++ {
			var want int64
			for i := 1; i < n; i++ {
				want += int64(max(min(m, i), 0))
			}
			if got := SumMin(m, n); got != want {
				t.Errorf("SumMin(%d, %d) = %d, want %d", m, n, got, want)
			}
		}
	}
	if SumMin(math.MaxInt, math.MaxInt) != math.MaxInt64 {
		t.Errorf("SumMin does not saturate: %d", SumMin(math.MaxInt, math.MaxInt))
	}
}

func TestTensorBytes(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		want  int64
	}{
		{[]int{1}, 4 + 9 + HeaderBytes},
		{[]int{1000}, 4000 + 1008 + HeaderBytes},
		{[]int{1 << 20}, 4<<20 + 8<<10 + HeaderBytes},
		{[]int{math.MaxInt, 4}, math.MaxInt64},
	} {
		if got := TensorBytes(tc.shape...); got != tc.want {
			t.Errorf("TensorBytes(%v) = %d, want %d", tc.shape, got, tc.want)
		}
	}
}

// TestParams checks that Params counts matrices apart, and among them
// those whose columns are whole Q8_0 blocks, and saturates.
func TestParams(t *testing.T) {
	var layer Params
	layer.Add(8)              // a norm
	layer.AddMatrix(2, 3, 64) // Q8_0-able
	layer.AddMatrix(1, 5, 40) // not
	var p Params
	p.AddN(3, layer)
	p.AddMatrix(1, 7, 32)
	if p.All != 3*(8+2*3*64+5*40)+7*32 || p.Matrix != 3*(2*3*64+5*40)+7*32 || p.Q8 != 3*2*3*64+7*32 {
		t.Errorf("counted %+v", p)
	}
	var e api.MemoryEstimate
	p.SetIn(&e)
	if e.Parameters != p.All.Value() || e.MatrixParameters != p.Matrix.Value() || e.Q8Parameters != p.Q8.Value() || e.WeightBytes != 4*e.Parameters {
		t.Errorf("estimate %+v from %+v", e, p)
	}
	p.AddN(math.MaxInt64, layer)
	p.AddMatrix(-1, 32, 32)
	if p.All != math.MaxInt64 || p.Matrix != math.MaxInt64 || p.Q8 != math.MaxInt64 {
		t.Errorf("did not saturate: %+v", p)
	}
}
