package mamba

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

var _ api.StateTuner = (*Model)(nil)

// StateLossAndGrad implements api.StateTuner: every piece of batch (each
// row, or each document with batch.Starts) starts its convolution and scan
// from init's conv window and SSM state, and the gradients are those of
// init's tensors "layers.i.conv" and "layers.i.ssm".
func (m *Model) StateLossAndGrad(ctx context.Context, init api.State, batch api.Batch) (_ float64, _ []api.HostTensor, err error) {
	defer api.Recover(&err)
	st, err := m.ownState(init, 1)
	if err != nil {
		return 0, nil, err
	}
	in, err := tokens.Upload(m.b, batch, m.cfg.VocabSize)
	if err != nil {
		return 0, nil, fmt.Errorf("mamba: %w", err)
	}
	loss, grads, err := nn.StateLossAndGrad(ctx, m.params, st.tensors(), func(t *nn.Tape, state []*nn.Var) (*nn.Var, error) {
		iv := &initVars{}
		for i := 0; i < len(state); i += 2 {
			iv.conv, iv.ssm = append(iv.conv, state[i]), append(iv.ssm, state[i+1])
		}
		logits, err := m.run(ctx, t, in.Inputs, pass{lay: in.Layout, init: iv})
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
