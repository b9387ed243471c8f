package eval

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
)

// choiceLogLikelihoods returns LogLikelihood of each continuation after
// contextIDs. A model whose states can be copied (api.StateSaver) runs the
// context once: its state is prefilled, copied for each continuation
// (api.CopyState) and each copy prefilled with the continuation's tokens
// but the last. Other models run one Forward per continuation. The two
// agree to float32 rounding (the forms' sums run in other orders).
func choiceLogLikelihoods(ctx context.Context, m api.Model, contextIDs []int32, conts [][]int32) (ll []float64, greedy []bool, err error) {
	ll, greedy = make([]float64, len(conts)), make([]bool, len(conts))
	perChoice := func() ([]float64, []bool, error) {
		for j, c := range conts {
			if ll[j], greedy[j], err = LogLikelihood(ctx, m, contextIDs, c); err != nil {
				return nil, nil, fmt.Errorf("choice %d: %w", j, err)
			}
		}
		return ll, greedy, nil
	}
	if _, ok := m.(api.StateSaver); !ok || !m.Info().Snapshots || len(contextIDs) == 0 || len(conts) < 2 {
		return perChoice()
	}
	for j, c := range conts {
		if err := checkPair(m.Config().Vocab(), contextIDs, c); err != nil {
			return nil, nil, fmt.Errorf("choice %d: %w", j, err)
		}
	}
	st, err := m.NewState(1)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	t, err := generate.PrefillLast(ctx, m, st, [][]int32{contextIDs})
	if err != nil {
		return nil, nil, fmt.Errorf("context: %w", err)
	}
	first := slices.Clone(api.Float32s(t)) // predicts each continuation's first token
	t.Backend().Free(t)
	for j, c := range conts {
		branch, err := api.CopyState(ctx, m, st)
		if errors.Is(err, api.ErrUnsupported) { // a plugin's model without snapshots
			return perChoice()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("choice %d: %w", j, err)
		}
		ll[j], greedy[j], err = continuation(ctx, m, branch, first, c)
		branch.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("choice %d: %w", j, err)
		}
	}
	return ll, greedy, nil
}

// continuation returns the log-likelihood of cont, and whether each of its
// tokens is the most likely one, given first (the logits that predict its
// first token) and st, the state after the context, which it advances.
func continuation(ctx context.Context, m api.Model, st api.State, first []float32, cont []int32) (float64, bool, error) {
	var ll sum
	ll.add(-nll(first, cont[0]))
	greedy := argmax(first) == int(cont[0])
	if len(cont) == 1 {
		return ll.value(), greedy, nil
	}
	V := m.Config().Vocab()
	t, err := m.Prefill(ctx, st, [][]int32{cont[:len(cont)-1]}, api.Form{})
	if err != nil {
		return 0, false, err
	}
	defer t.Backend().Free(t)
	rows, err := hostLogits(t, len(cont)-1, V)
	if err != nil {
		return 0, false, err
	}
	for i, target := range cont[1:] {
		row := rows[i*V : (i+1)*V]
		ll.add(-nll(row, target))
		greedy = greedy && argmax(row) == int(target)
	}
	return ll.value(), greedy, nil
}
