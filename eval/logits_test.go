package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRowsNLL checks the float64 log-softmax against a direct formula
// (1e-12 relative), that it is stable for large logits, and that the
// split over goroutines changes no bit.
func TestRowsNLL(t *testing.T) {
	const rows, V = 300, 1000
	r := rand.New(rand.NewPCG(7, 8))
	logits := make([]float32, rows*V)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	targets := make([]int32, rows)
	for i := range targets {
		targets[i] = int32(r.IntN(V))
	}
	one := make([]float64, rows)
	rowsNLL(logits, V, targets, one, 1)
	for _, workers := range []int{2, 3, 8} {
		got := make([]float64, rows)
		rowsNLL(logits, V, targets, got, workers)
		for i := range got {
			if got[i] != one[i] {
				t.Fatalf("%d workers: row %d: %v, one worker %v", workers, i, got[i], one[i])
			}
		}
	}
	for i := range rows {
		var z float64
		for _, x := range logits[i*V : (i+1)*V] {
			z += math.Exp(float64(x))
		}
		want := math.Log(z) - float64(logits[i*V+int(targets[i])])
		if math.Abs(one[i]-want) > 1e-12*want {
			t.Fatalf("row %d: %.17g, want %.17g", i, one[i], want)
		}
	}
	if got := nll([]float32{1000, 0}, 1); got != 1000 {
		t.Errorf("nll of a logit 1000 below the top: %v, want 1000", got)
	}
	if got := nll([]float32{-1e4, -1e4}, 0); math.Abs(got-math.Ln2) > 1e-15 {
		t.Errorf("nll of two equal logits of -1e4: %v, want ln 2", got)
	}
	if got := argmax([]float32{1, 3, 3, 2}); got != 1 {
		t.Errorf("argmax of a tie: %d, want the first, 1", got)
	}
	if got := argmax([]float32{float32(math.NaN()), 1, 2}); got != 2 {
		t.Errorf("argmax past a NaN: %d, want 2", got)
	}
}

// TestMeanStderr checks the standard error of the mean against a case
// worked by hand: 0, 1, 1, 1 has mean 3/4, sample variance 1/4, standard
// error 1/2 / √4 = 1/4.
func TestMeanStderr(t *testing.T) {
	mean, se := meanStderr([]float64{0, 1, 1, 1})
	if mean != 0.75 || math.Abs(se-0.25) > 1e-15 {
		t.Errorf("mean %v, stderr %v; want 0.75, 0.25", mean, se)
	}
	if _, se := meanStderr([]float64{1}); !math.IsNaN(se) {
		t.Errorf("one value: stderr %v, want NaN", se)
	}
}
