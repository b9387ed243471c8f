package lossplot

import (
	"testing"

	"gonum.org/v1/plot/plotter"
)

func TestMovingMean(t *testing.T) {
	xy := plotter.XYs{{X: 0, Y: 1}, {X: 1, Y: 3}, {X: 2, Y: 5}, {X: 3, Y: 7}}
	want := []float64{1, 2, 4, 6} // the means of windows of at most 2 points
	got := MovingMean(xy, 2)
	for i := range want {
		if got[i].Y != want[i] || got[i].X != xy[i].X {
			t.Errorf("point %d: %v, want (%v, %v)", i, got[i], xy[i].X, want[i])
		}
	}
}
