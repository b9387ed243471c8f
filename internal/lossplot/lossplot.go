// Package lossplot holds what the plots of loss curves share: the training
// run's loss.png (densessm train, internal/cli) and the experiment's figures
// (experiments/dense-vs-base).
package lossplot

import "gonum.org/v1/plot/plotter"

// MovingMean returns the mean of each point's y and the w-1 before it.
func MovingMean(xy plotter.XYs, w int) plotter.XYs {
	out := make(plotter.XYs, len(xy))
	var sum float64
	for i, p := range xy {
		sum += p.Y
		if i >= w {
			sum -= xy[i-w].Y
		}
		out[i] = plotter.XY{X: p.X, Y: sum / float64(min(i+1, w))}
	}
	return out
}
