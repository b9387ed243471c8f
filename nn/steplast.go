package nn

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

// StepLast feeds ids [B,T] (T >= 1) to m from s one token at a time with
// Step and returns a copy of the last step's logits [B,V]: the recurrent
// form of a prefill that wants only the last position's logits.
func StepLast(ctx context.Context, m api.Model, s api.State, ids [][]int32) (api.Tensor, error) {
	if len(ids) == 0 || len(ids[0]) == 0 {
		return nil, fmt.Errorf("recurrent form: no tokens: %w", api.ErrShape)
	}
	T := len(ids[0])
	for b, seq := range ids {
		if len(seq) != T {
			return nil, fmt.Errorf("recurrent form: sequence %d has %d tokens, sequence 0 has %d: %w", b, len(seq), T, api.ErrShape)
		}
	}
	step := make([]int32, len(ids))
	var logits api.Tensor
	for i := range T {
		for b, seq := range ids {
			step[b] = seq[i]
		}
		var err error
		if logits, err = m.Step(ctx, s, step); err != nil {
			return nil, err
		}
	}
	be := logits.Backend()
	out := be.Alloc(api.F32, logits.Shape()...)
	be.Copy(out, logits)
	return out, nil
}
