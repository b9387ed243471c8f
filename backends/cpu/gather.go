package cpu

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// gatherShapes checks table-like [V,D] t, I32 ids of any shape S and rows
// [S..., D], and that every id is in [0,V); it returns V and D.
func gatherShapes(op string, t, ids, rows *Tensor, what string) (v, d int) {
	if len(t.shape) != 2 {
		api.Panicf(api.ErrShape, "%s: table %v, want [V,D]", op, t.shape)
	}
	v, d = t.shape[0], t.shape[1]
	if r := len(ids.shape); len(rows.shape) != r+1 || !slices.Equal(rows.shape[:r], ids.shape) || rows.shape[r] != d {
		want := append(slices.Clone(ids.shape), d)
		api.Panicf(api.ErrShape, "%s: %s has shape %v, want %v for ids %v and table %v", op, what, rows.shape, want, ids.shape, t.shape)
	}
	for i, id := range ids.i32 {
		if id < 0 || int(id) >= v {
			api.Panicf(api.ErrOutOfRange, "%s: id %d at %d is outside [0,%d)", op, id, i, v)
		}
	}
	return v, d
}

// Gather sets dst[i..., :] = table[ids[i...], :].
func (b *Backend) Gather(dst, table, ids api.Tensor) {
	const op = "gather"
	d, t, x := b.f32(dst, op), b.own(table), b.i32(ids, op)
	var low lowMatrix
	if isLow(t.dtype) && len(t.shape) == 2 {
		low = newLowMatrix(t, t.shape[0], t.shape[1])
	} else {
		t = b.f32(table, op)
	}
	_, n := gatherShapes(op, t, x, d, "dst")
	if n == 0 {
		return
	}
	task := gatherTasks.get()
	*task = gatherTask{dst: d.f32, table: t.f32, low: low, ids: x.i32, n: n}
	b.run(len(x.i32), max(1, minGrain/n), task)
	gatherTasks.put(task)
}

// gatherTask copies table rows of n floats into dst, one per id, or
// widens them from low when the table is in low precision.
type gatherTask struct {
	dst, table []float32
	low        lowMatrix // dtype Invalid when the table is F32
	ids        []int32
	n          int
}

var gatherTasks taskPool[gatherTask]

func (t *gatherTask) run(lo, hi int) {
	n := t.n
	for i := lo; i < hi; i++ {
		id := int(t.ids[i])
		if t.low.dtype != api.Invalid {
			t.low.widen(t.dst[i*n:(i+1)*n], id, 0)
			continue
		}
		copy(t.dst[i*n:(i+1)*n], t.table[id*n:(id+1)*n])
	}
}

// GatherGrad sets dtable to zero and adds each row of dy into the row its
// id names. Workers own disjoint ranges of table rows and each scans all
// ids in order, so every row sums its contributions in id order whatever
// the thread count.
func (b *Backend) GatherGrad(dtable, ids, dy api.Tensor) {
	const op = "gather grad"
	g, x, up := b.f32(dtable, op), b.i32(ids, op), b.f32(dy, op)
	v, n := gatherShapes(op, g, x, up, "dy")
	if n == 0 {
		return
	}
	b.parallelGrain(v, max(1, minGrain/n), func(lo, hi int) {
		clear(g.f32[lo*n : hi*n])
		for i, id32 := range x.i32 {
			id := int(id32)
			if id < lo || id >= hi {
				continue
			}
			row, src := g.f32[id*n:(id+1)*n], up.f32[i*n:(i+1)*n]
			for j, s := range src {
				row[j] += s
			}
		}
	})
}
