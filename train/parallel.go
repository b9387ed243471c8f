package train

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

// A Reducer makes a Trainer one process of a data-parallel run: every
// process runs the same Trainer, from the same weights, on its own share
// of each batch, and the Reducer makes their steps one step of the whole
// batch (package distributed implements it over MPI).
type Reducer interface {
	// Reduce is called by every process at the same point of every
	// step: once the step's micro-batches have run, their mean losses
	// summed in loss, their target counts summed in tokens and their
	// gradients accumulated in grads, and before anything reads them. It
	// returns the mean of loss over the processes and the sum of tokens,
	// and replaces each gradient by its mean over the processes, so that
	// every process checks, clips and applies the same update.
	Reduce(ctx context.Context, loss float64, tokens int64, grads []api.Parameter) (float64, int64, error)
}

// SetReducer makes the trainer one process of a data-parallel run whose
// steps r combines (see Reducer); call it before Run. The step metrics then
// count the targets of every process. The model must train in this process
// (an api.Trainable, not a plugin's api.TrainStepper): the error wraps
// api.ErrUnsupported otherwise.
func (t *Trainer) SetReducer(r Reducer) error {
	ls, ok := t.stepper.(*LocalStepper)
	if !ok {
		return fmt.Errorf("data-parallel training: %s models train in their plugin's process, not in this one: %w", t.model.Info().Arch, api.ErrUnsupported)
	}
	t.reducer = r
	if r == nil {
		ls.reduce = nil
		return nil
	}
	ls.reduce = func(ctx context.Context, loss float64, grads []api.Parameter) (float64, error) {
		l, n, err := r.Reduce(ctx, loss, t.reduced, grads)
		if err != nil {
			return 0, err
		}
		t.reduced = n
		return l, nil
	}
	return nil
}
