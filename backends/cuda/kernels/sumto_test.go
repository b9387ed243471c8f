package kernels

import (
	"math/rand/v2"
	"testing"
)

// TestPlanSumTo checks the plan's offsets on random shapes against SumTo by
// the definition: output i at dst's index, summed over x's elements that
// broadcast to it.
func TestPlanSumTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		rank := 1 + rng.IntN(6)
		x := make([]int, rank)
		dst := make([]int, rank)
		for i := range x {
			x[i] = 1 + rng.IntN(3)
			if rng.IntN(2) == 0 {
				dst[i] = 1
			} else {
				dst[i] = x[i]
			}
		}
		drop := rng.IntN(rank + 1) // leading axes dst may lack (when 1)
		for drop > 0 && dst[0] == 1 {
			dst, drop = dst[1:], drop-1
		}
		p, err := PlanSumTo(dst, x)
		if err != nil {
			t.Fatal(err)
		}
		pad := make([]int, len(x)-len(dst))
		for i := range pad {
			pad[i] = 1
		}
		full := append(pad, dst...)
		nx, nd := 1, 1
		for i := range x {
			nx *= x[i]
			nd *= full[i]
		}
		// want[i] = the x offsets summed into output i.
		want := make([]map[int64]bool, nd)
		for i := range want {
			want[i] = map[int64]bool{}
		}
		for off := range nx {
			rem, o := off, 0
			idx := make([]int, len(x))
			for d := len(x) - 1; d >= 0; d-- {
				idx[d] = rem % x[d]
				rem /= x[d]
			}
			for d := range x {
				k := idx[d]
				if full[d] == 1 {
					k = 0
				}
				o = o*full[d] + k
			}
			want[o][int64(off)] = true
		}
		if p.Outputs() != int64(nd) || p.Outputs()*p.Summed() != int64(nx) {
			t.Fatalf("sum of %v to %v: plan %+v has %d outputs of %d", x, dst, p, p.Outputs(), p.Summed())
		}
		for i := range int64(nd) {
			for j := range p.Summed() {
				if off := p.Offsets(i, j); !want[i][off] {
					t.Fatalf("sum of %v to %v: plan %+v: output %d element %d at %d", x, dst, p, i, j, off)
				}
				delete(want[i], p.Offsets(i, j))
			}
			if len(want[i]) != 0 {
				t.Fatalf("sum of %v to %v: output %d misses %v", x, dst, i, want[i])
			}
		}
		if q := DecodeSumToPlan(p.Bytes()); q.Outputs() != p.Outputs() || q.Summed() != p.Summed() || len(q.Keep) != len(p.Keep) || len(q.Sum) != len(p.Sum) {
			t.Fatalf("plan %+v decodes as %+v", p, q)
		}
	}
}
