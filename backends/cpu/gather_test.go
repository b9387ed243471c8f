package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestGatherGradSplits scatters many ids with heavy repetition into a
// table large enough to be split across threads, against a float64
// reference, and checks that 1 and 3 threads give the same bits.
func TestGatherGradSplits(t *testing.T) {
	const v, d, n = 1000, 20, 5000
	r := rand.New(rand.NewPCG(8, 1))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(v/2) * 2) // only even rows, many times
	}
	var first []float32
	for _, threads := range testThreads {
		be := New(api.BackendOptions{Threads: threads})
		dy := randT(be, rand.New(rand.NewPCG(8, 2)), -1, 1, n/50, 50, d)
		idt := api.FromInt32s(be, ids, n/50, 50)
		want := make([]float64, v*d)
		for i, id := range ids {
			for j := range d {
				want[int(id)*d+j] += float64(dy.f32[i*d+j])
			}
		}
		dt := nanT(be, v, d)
		be.GatherGrad(dt, idt, dy)
		checkClose(t, fmt.Sprintf("threads=%d", threads), dt.f32, want, 1e-5)
		if first == nil {
			first = dt.f32
		} else {
			checkSameBits(t, "1 vs 3 threads", dt.f32, first)
		}

		// Gather back the rows: each must equal the table row of its id.
		g := nanT(be, n/50, 50, d)
		be.Gather(g, dt, idt)
		for i, id := range ids {
			for j := range d {
				if g.f32[i*d+j] != dt.f32[int(id)*d+j] {
					t.Fatalf("threads=%d: gather row %d (id %d) differs from the table", threads, i, id)
				}
			}
		}
	}
}
