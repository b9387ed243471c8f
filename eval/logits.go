package eval

import (
	"fmt"
	"math"
	"sync"

	"github.com/densessm/densessm/api"
)

// hostLogits returns the elements of logits [1,T,V] as float32s, the
// backend's own storage when it gives host access to it (no copy).
func hostLogits(t api.Tensor, T, V int) (_ []float32, err error) {
	defer api.Recover(&err)
	if want := (api.Shape{1, T, V}); !t.Shape().Equal(want) {
		return nil, fmt.Errorf("logits of shape %v, want %v: %w", t.Shape(), want, api.ErrShape)
	}
	if t.DType() != api.F32 {
		return nil, fmt.Errorf("logits of dtype %s, want %s: %w", t.DType(), api.F32, api.ErrDType)
	}
	if h, ok := t.(api.HostFloat32s); ok {
		return h.HostFloat32s(), nil
	}
	return api.Float32s(t), nil
}

// nll returns -log softmax(row)[target], computed in float64. Logits that
// are not finite give NaN or an infinity.
func nll(row []float32, target int32) float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = max(mx, float64(x))
	}
	var s float64
	for _, x := range row {
		s += math.Exp(float64(x) - mx)
	}
	return math.Log(s) - (float64(row[target]) - mx)
}

// parallelRows is the least work, in logits, worth a goroutine.
const parallelRows = 1 << 16

// rowsNLL sets out[i] to nll of row i of logits (rows of V floats) and
// targets[i], splitting the rows over up to workers goroutines. Each value
// is computed alone, so the result does not depend on the split.
func rowsNLL(logits []float32, V int, targets []int32, out []float64, workers int) {
	n := len(targets)
	workers = max(1, min(workers, n*V/parallelRows))
	run := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = nll(logits[i*V:(i+1)*V], targets[i])
		}
	}
	if workers == 1 {
		run(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { run(w*n/workers, (w+1)*n/workers) })
	}
	wg.Wait()
}

// argmax returns the index of the first largest value of row (0 when every
// value is NaN).
func argmax(row []float32) int {
	best := 0
	for i, x := range row {
		if x > row[best] || (row[best] != row[best] && x == x) {
			best = i
		}
	}
	return best
}

// sum is a compensated (Neumaier) sum of float64s, accurate over the
// millions of terms of a long stream; the same terms in the same order
// give the same bits.
type sum struct{ s, c float64 }

// add adds x.
func (k *sum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

// value returns the sum (NaN or an infinity when a term was one).
func (k *sum) value() float64 {
	if math.IsInf(k.s, 0) || math.IsNaN(k.s) {
		return k.s
	}
	return k.s + k.c
}
