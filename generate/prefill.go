package generate

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

// LastLogitsPrefiller is a model whose Prefill can return the logits of
// the last position alone: PrefillLast is Prefill (same form, same State
// afterwards) returning [B,V] instead of [B,T,V]. A decoder samples only
// from that row, so the model can skip the output projection of every
// other position (for mamba-130m a third of a prefill's products) and
// never hold [B,T,V] logits. The built-in Mamba and RetNet families
// implement it; PrefillLast uses it when a model does.
type LastLogitsPrefiller interface {
	PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error)
}

// maxPrefillRows bounds the tokens of one prefill window over the whole
// batch (B·T) when only the last logits are computed: the activations of
// one layer grow with it.
const maxPrefillRows = 4096

// PrefillLast runs ids (a batch of sequences of one length, at least one
// token) through m from s in windows of at most 512 tokens, each in the
// chunkwise form continued from the State, and returns the logits of the
// last position, [B,V]. It uses the model's PrefillLast when it has one
// (LastLogitsPrefiller); otherwise it keeps the last row of the last
// window's logits and frees each window's [B,T,V] logits as it goes. Its
// memory grows with the window, not with the prompt. ctx is checked before
// each window; s is advanced window by window, so after an error it holds
// the windows that completed.
func PrefillLast(ctx context.Context, m api.Model, s api.State, ids [][]int32) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if len(ids) == 0 || len(ids[0]) == 0 {
		return nil, fmt.Errorf("prefill of no tokens: %w", api.ErrShape)
	}
	T := len(ids[0])
	for b, seq := range ids {
		if len(seq) != T {
			return nil, fmt.Errorf("prefill: sequence %d has %d tokens, sequence 0 has %d: %w", b, len(seq), T, api.ErrShape)
		}
	}
	return prefillLast(ctx, m, s, ids, T)
}

// prefillLast is PrefillLast of the first L tokens of each of ids (L >= 1,
// every sequence at least that long).
func prefillLast(ctx context.Context, m api.Model, s api.State, ids [][]int32, L int) (api.Tensor, error) {
	B, V := len(ids), m.Config().Vocab()
	lp, last := m.(LastLogitsPrefiller)
	window := min(maxPrefillWindow, max(1, maxPrefillLogits/(B*V)))
	if last {
		window = min(maxPrefillWindow, max(1, maxPrefillRows/B))
	}
	f := api.Form{Mode: api.Chunkwise}
	block := make([][]int32, B)
	for pos := 0; pos < L; {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("prefill at token %d: %w", pos, err)
		}
		n := min(window, L-pos)
		for b := range block {
			block[b] = ids[b][pos : pos+n]
		}
		var t api.Tensor
		var err error
		if last {
			t, err = lp.PrefillLast(ctx, s, block, f)
		} else {
			t, err = m.Prefill(ctx, s, block, f)
		}
		if err != nil {
			return nil, fmt.Errorf("prefill tokens %d to %d: %w", pos, pos+n, err)
		}
		pos += n
		switch {
		case last && !t.Shape().Equal(api.Shape{B, V}):
			return nil, fmt.Errorf("prefill: last logits of shape %v, want [%d %d]: %w", t.Shape(), B, V, api.ErrShape)
		case last:
			if pos == L {
				return t, nil
			}
			t.Backend().Free(t)
		case !t.Shape().Equal(api.Shape{B, n, V}):
			return nil, fmt.Errorf("prefill: logits of shape %v, want [%d %d %d]: %w", t.Shape(), B, n, V, api.ErrShape)
		default:
			be := t.Backend()
			if pos == L {
				row := be.Alloc(api.F32, B, 1, V)
				be.Slice(row, t, 1, n-1)
				be.Free(t)
				return be.Reshape(row, B, V), nil
			}
			be.Free(t)
		}
	}
	panic("unreachable")
}
