package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() { register("Gather", testGather) }

// refGather returns table rows (of d values) in the order of ids.
func refGather(table []float64, ids []int32, d int) []float64 {
	out := make([]float64, 0, len(ids)*d)
	for _, id := range ids {
		out = append(out, table[int(id)*d:int(id+1)*d]...)
	}
	return out
}

func testGather(t *testing.T, b api.Backend) {
	cases := []struct {
		v, d     int
		idsShape []int
		ids      []int32 // nil: random
	}{
		{5, 3, []int{7}, []int32{4, 0, 4, 2, 4, 1, 0}}, // repeated ids
		{5, 3, []int{2, 3}, []int32{1, 1, 1, 3, 0, 4}},
		{6, 4, []int{}, []int32{5}}, // scalar ids give dst [D]
		{6, 4, []int{0}, []int32{}},
		{6, 4, []int{2, 0}, []int32{}},
		{1, 5, []int{3}, []int32{0, 0, 0}},
		{9, 1, []int{2, 2}, []int32{8, 0, 3, 8}},
		{40, 33, []int{3, 50}, nil},
	}
	for i, c := range cases {
		runSub(t, fmt.Sprintf("table%dx%d/ids%s", c.v, c.d, shapeName(c.idsShape)), func(t *testing.T) {
			r := newRand(uint64(120 + i))
			ids := c.ids
			if ids == nil {
				for range numel(c.idsShape) {
					ids = append(ids, int32(r.IntN(c.v)))
				}
			}
			table := f32(randVals(r, c.v*c.d, -2, 2))
			dshape := append(append([]int(nil), c.idsShape...), c.d)
			tt, it := upload(b, table, c.v, c.d), uploadIDs(b, ids, c.idsShape...)
			dst := upload(b, filled(numel(dshape), math.NaN()), dshape...)
			b.Gather(dst, tt, it)
			checkExact(t, "gather", download(dst), refGather(table, ids, c.d))

			// GatherGrad: finite differences of the gather reference with
			// respect to the table give the scatter-add of dy. Gather is
			// linear, so they are exact to about 1e-9 and the forward
			// tolerance applies. dtable starts as NaN: the kernel must zero
			// it first.
			dy := f32(randVals(r, numel(dshape), -1, 1))
			want := numericGrad(func(in [][]float64) []float64 { return refGather(in[0], ids, c.d) }, [][]float64{table}, dy)
			dtable := upload(b, filled(c.v*c.d, math.NaN()), c.v, c.d)
			b.GatherGrad(dtable, it, upload(b, dy, dshape...))
			checkRel(t, "gathergrad", download(dtable), want[0], RelTol)
		})
	}
}
