package retnet

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

var _ api.StateTuner = (*Model)(nil)

// StateLossAndGrad implements api.StateTuner: every piece of batch (each
// row, or each document with batch.Starts) starts its retention from
// init's states, rotated from init's position, in the chunkwise form with
// one chunk (the form that carries a gradient to the initial state); the
// gradients are those of init's tensors "layers.i.retention". init must
// stand at a position of 1 or more (a state of the tokens of a prefix, or
// zeros loaded at such a position): at position 0 a state has no part in
// the tokens after it, its factor in the normalised retention being 0.
func (m *Model) StateLossAndGrad(ctx context.Context, init api.State, batch api.Batch) (_ float64, _ []api.HostTensor, err error) {
	defer api.Recover(&err)
	st, err := m.ownState(init, 1)
	if err != nil {
		return 0, nil, err
	}
	if st.lens[0] == 0 {
		return 0, nil, fmt.Errorf("%s: state tuning: a state at position 0 has no part in the tokens after it: start from a state at position 1 or more: %w", m.cfg.ModelType, api.ErrConfig)
	}
	in, err := tokens.Upload(m.b, batch, m.cfg.VocabSize)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	loss, grads, err := nn.StateLossAndGrad(ctx, m.params, st.tensors(), func(t *nn.Tape, state []*nn.Var) (*nn.Var, error) {
		p := pass{form: api.RetentionChunkwise, chunk: in.Layout.T, pieces: nn.PiecesOf(in.Inputs.Shape(), in.Layout), init: state, initPos: st.lens[0]}
		logits, _, err := m.run(ctx, t, in.Inputs, in.Flat, p)
		if err != nil {
			return nil, err
		}
		return t.CrossEntropy(logits, in.Targets), nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("%s: state tuning: %w", m.cfg.ModelType, err)
	}
	return loss, grads, nil
}
