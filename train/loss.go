package train

import (
	"context"
	"fmt"
	"iter"
	"math"

	"github.com/densessm/densessm/api"
)

// MeanLoss returns the mean cross-entropy (nats per target) of m over the
// first max batches of batches (0: all), computed from the parallel form's
// logits on the host in float64, and the number of targets counted. It
// builds no gradients. A batch with document starts runs as its documents,
// each from an empty state (api.Batch.Documents).
func MeanLoss(ctx context.Context, m api.Model, batches iter.Seq2[api.Batch, error], max int) (float64, int64, error) {
	return meanOver(batches, max, func(b api.Batch) (float64, int64, error) {
		b = b.Documents()
		logits, err := m.Forward(ctx, b.Inputs, api.Form{})
		if err != nil {
			return 0, 0, err
		}
		return crossEntropy(logits, b.Targets)
	})
}

// meanOver returns the mean loss over the first max batches of batches (0:
// all), each batch's summed loss and target count given by loss, and the
// number of targets counted.
func meanOver(batches iter.Seq2[api.Batch, error], max int, loss func(api.Batch) (float64, int64, error)) (float64, int64, error) {
	var sum float64
	var n int64
	i := 0
	for b, err := range batches {
		if err != nil {
			return 0, 0, err
		}
		if max > 0 && i == max {
			break
		}
		i++
		s, k, err := loss(b)
		if err != nil {
			return 0, 0, err
		}
		sum, n = sum+s, n+k
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no validation targets: %w", api.ErrNotFound)
	}
	return sum / float64(n), n, nil
}

// crossEntropy returns the summed negative log-likelihood of targets
// [B][≤T] under logits [B,T,V] and the number of targets counted.
func crossEntropy(logits api.Tensor, targets [][]int32) (_ float64, _ int64, err error) {
	defer api.Recover(&err)
	sh := logits.Shape()
	if len(sh) != 3 || sh[0] != len(targets) {
		return 0, 0, fmt.Errorf("logits %v for %d rows: %w", sh, len(targets), api.ErrShape)
	}
	T, V := sh[1], sh[2]
	all := api.ViewFloat32s(logits).V
	var sum float64
	var n int64
	for b, row := range targets {
		if len(row) > T {
			return 0, 0, fmt.Errorf("row %d: %d targets for %d positions: %w", b, len(row), T, api.ErrShape)
		}
		for t, y := range row {
			if y == api.IgnoreIndex {
				continue
			}
			if y < 0 || int(y) >= V {
				return 0, 0, fmt.Errorf("target %d outside the vocabulary of %d: %w", y, V, api.ErrOutOfRange)
			}
			z := all[(b*T+t)*V : (b*T+t+1)*V]
			mx := math.Inf(-1)
			for _, v := range z {
				mx = math.Max(mx, float64(v))
			}
			var s float64
			for _, v := range z {
				s += math.Exp(float64(v) - mx)
			}
			sum += mx + math.Log(s) - float64(z[y])
			n++
		}
	}
	return sum, n, nil
}
