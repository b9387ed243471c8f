package cpu

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestSoftmaxExtremes checks rows whose exponentials overflow or underflow
// float32 (and float64, without the max shift), and -Inf entries.
func TestSoftmaxExtremes(t *testing.T) {
	inf := math.Inf(1)
	rows := [][]float64{
		{1e4, 1e4 - 1, -1e4},
		{1e38, 0, -1e38},
		{-inf, 0, 1},
		{-1e30, -1e30, -1e30},
	}
	be := New(api.BackendOptions{Threads: 2})
	for _, row := range rows {
		x := make([]float32, len(row))
		for i, v := range row {
			x[i] = float32(v)
		}
		m := math.Inf(-1)
		for _, v := range x {
			m = max(m, float64(v))
		}
		var sum float64
		for _, v := range x {
			sum += math.Exp(float64(v) - m)
		}
		wantP, wantL := make([]float64, len(x)), make([]float64, len(x))
		for i, v := range x {
			wantL[i] = float64(v) - m - math.Log(sum)
			wantP[i] = math.Exp(wantL[i])
		}
		xt := newT(be, x, 1, len(x))
		p, l := nanT(be, 1, len(x)), nanT(be, 1, len(x))
		be.Softmax(p, xt)
		be.LogSoftmax(l, xt)
		checkClose(t, "softmax", p.f32, wantP, 1e-6)
		checkClose(t, "log softmax", l.f32, wantL, 1e-6)
	}
}

// TestCrossEntropyRows checks ignored rows (zero loss and gradient),
// extreme logits, a nil gradient, and that a bad target panics before
// anything is written.
func TestCrossEntropyRows(t *testing.T) {
	be := New(api.BackendOptions{Threads: 2})
	logits := newT(be, []float32{
		1, 2, 3, 4,
		1e4, 0, -1e4, 5,
		9, 9, 9, 9,
	}, 3, 4)
	targets := api.FromInt32s(be, []int32{2, 0, api.IgnoreIndex}, 3)
	loss, grad := nanT(be, 3), nanT(be, 3, 4)
	be.CrossEntropy(loss, grad, logits, targets, api.IgnoreIndex)
	lse0 := 4 + math.Log(1+math.Exp(-1)+math.Exp(-2)+math.Exp(-3))
	wantLoss := []float64{lse0 - 3, 0, 0}
	wantGrad := make([]float64, 12)
	for j := range 4 {
		wantGrad[j] = math.Exp(float64(logits.f32[j]) - lse0)
	}
	wantGrad[2]--
	lse1 := 1e4 + math.Log(1+math.Exp(-1e4)+math.Exp(-2e4)+math.Exp(5-1e4))
	for j := range 4 {
		wantGrad[4+j] = math.Exp(float64(logits.f32[4+j]) - lse1)
	}
	wantGrad[4]--
	checkClose(t, "loss", loss.f32, wantLoss, 1e-6)
	checkClose(t, "dlogits", grad.f32, wantGrad, 1e-6)
	for j, g := range grad.f32[8:] {
		if g != 0 {
			t.Errorf("ignored row: dlogits[%d] = %v, want 0", j, g)
		}
	}

	be.CrossEntropy(loss, nil, logits, targets, api.IgnoreIndex)
	checkClose(t, "loss without gradient", loss.f32, wantLoss, 1e-6)

	// A target out of range in the last row: nothing may be written.
	loss2, grad2 := nanT(be, 3), nanT(be, 3, 4)
	bad := api.FromInt32s(be, []int32{0, 1, 4}, 3)
	mustPanic(t, "target 4 of 4 classes", api.ErrOutOfRange, func() {
		be.CrossEntropy(loss2, grad2, logits, bad, api.IgnoreIndex)
	})
	for _, v := range append(loss2.f32, grad2.f32...) {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("a failed CrossEntropy wrote its outputs: loss %v", loss2.f32)
		}
	}
}
