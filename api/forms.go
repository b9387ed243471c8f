package api

import (
	"context"
	"fmt"
)

// RunRecurrent computes ids from s one token at a time with m.Step and
// returns the logits [B,T,V] on the backend of the step logits: the
// Recurrent mode of Forward and Prefill for any model.
func RunRecurrent(ctx context.Context, m Model, s State, ids [][]int32) (_ Tensor, err error) {
	defer Recover(&err)
	B := len(ids)
	if B == 0 || len(ids[0]) == 0 {
		return nil, fmt.Errorf("recurrent form: no tokens: %w", ErrShape)
	}
	T := len(ids[0])
	for i, seq := range ids {
		if len(seq) != T {
			return nil, fmt.Errorf("recurrent form: sequence %d has %d tokens, sequence 0 has %d: %w", i, len(seq), T, ErrShape)
		}
	}
	step := make([]int32, B)
	var out Tensor
	for t := range T {
		for b := range B {
			step[b] = ids[b][t]
		}
		logits, err := m.Step(ctx, s, step)
		if err != nil {
			return nil, err
		}
		be := logits.Backend()
		V := logits.Shape()[1]
		if out == nil {
			out = be.Alloc(F32, B, T, V)
		}
		be.SetSlice(out, be.Reshape(logits, B, 1, V), 1, t)
	}
	return out, nil
}

// ForwardWith implements Model.Forward for a model from its Prefill: a
// fresh state of len(ids) sequences, closed afterwards.
func ForwardWith(ctx context.Context, m Model, ids [][]int32, f Form) (Tensor, error) {
	s, err := m.NewState(len(ids))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return m.Prefill(ctx, s, ids, f)
}

// RunChunks computes ids a block of chunk tokens at a time with prefill,
// which continues a recurrent state from block to block, and returns the
// logits [B,T,V] of all blocks on the backend of the first block's: the
// Chunkwise mode of a model whose parallel form can continue from a state.
func RunChunks(ctx context.Context, ids [][]int32, chunk int, prefill func(ctx context.Context, ids [][]int32) (Tensor, error)) (_ Tensor, err error) {
	defer Recover(&err)
	if len(ids) == 0 || len(ids[0]) == 0 {
		return nil, fmt.Errorf("chunkwise form: no tokens: %w", ErrShape)
	}
	T := len(ids[0])
	if chunk <= 0 || chunk >= T {
		return prefill(ctx, ids)
	}
	block := make([][]int32, len(ids))
	var out Tensor
	for from := 0; from < T; from += chunk {
		to := min(from+chunk, T)
		for b, seq := range ids {
			if len(seq) != T {
				return nil, fmt.Errorf("chunkwise form: sequence %d has %d tokens, sequence 0 has %d: %w", b, len(seq), T, ErrShape)
			}
			block[b] = seq[from:to]
		}
		logits, err := prefill(ctx, block)
		if err != nil {
			return nil, err
		}
		be := logits.Backend()
		if out == nil {
			out = be.Alloc(F32, len(ids), T, logits.Shape()[2])
		}
		be.SetSlice(out, logits, 1, from)
		be.Free(logits) // a block's logits are copied: its backend may reuse them
	}
	return out, nil
}

// PrefillForms implements Model.Prefill in every form for a model whose
// parallel form continues from a state (prefill, which advances s): the
// chunkwise form runs it a block of f.Chunk tokens at a time (RunChunks),
// the recurrent form steps (RunRecurrent). f must be valid.
func PrefillForms(ctx context.Context, m Model, s State, ids [][]int32, f Form, prefill func(ctx context.Context, ids [][]int32) (Tensor, error)) (Tensor, error) {
	switch f.Mode {
	case Recurrent:
		return RunRecurrent(ctx, m, s, ids)
	case Chunkwise:
		return RunChunks(ctx, ids, f.Chunk, prefill)
	}
	return prefill(ctx, ids)
}
