package hgrn

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/tokens"
)

// State is the recurrent cache of a batch of sequences: each layer's own
// state s^l [B,D] (the dense link reads the layers below at the same token,
// so it carries nothing more). Its size does not depend on the sequence
// length. It implements api.State.
type State struct {
	m     *Model
	batch int
	pos   int
	s     []api.Tensor // per layer [B,D]
	step  *stepBuffers // Step's buffers, made by the first Step
}

var _ api.State = (*State)(nil)

// NewState returns an empty state for batch sequences.
func (m *Model) NewState(batch int) (_ api.State, err error) {
	defer api.Recover(&err)
	if batch < 1 {
		return nil, fmt.Errorf("hgrn: state for %d sequences: %w", batch, api.ErrShape)
	}
	st := &State{m: m, batch: batch}
	for range m.layers {
		st.s = append(st.s, m.b.Alloc(api.F32, batch, m.cfg.HiddenSize))
	}
	return st, nil
}

// Batch returns the number of sequences.
func (s *State) Batch() int { return s.batch }

// Len returns the number of tokens consumed per sequence.
func (s *State) Len() int { return s.pos }

// Reset zeroes the state.
func (s *State) Reset() (err error) {
	defer api.Recover(&err)
	for _, x := range s.s {
		s.m.b.Fill(x, 0)
	}
	s.pos = 0
	return nil
}

// Close does nothing: the state is Go memory.
func (s *State) Close() error { return nil }

// ownState checks that s is a State of m for batch sequences.
func (m *Model) ownState(s api.State, batch int) (*State, error) {
	st, ok := s.(*State)
	if !ok || st.m != m {
		return nil, fmt.Errorf("hgrn: state %T was not made by this model: %w", s, api.ErrShape)
	}
	if batch != st.batch {
		return nil, fmt.Errorf("hgrn: %d sequences for a state of %d: %w", batch, st.batch, api.ErrShape)
	}
	return st, nil
}

// stepBuffers are the tensors one Step writes into, made once per State.
type stepBuffers struct {
	ids                *tokens.Step // the step's ids, I32 [B]
	h, u, x            api.Tensor   // [B,D] residual stream and normed inputs
	f, a, in, g        api.Tensor   // [B,D] forget gate, 1-f then the input term, input, output gate
	fused, sel, o, out api.Tensor   // [B,D]
	gate, up           api.Tensor   // [B,I]
	logits             api.Tensor   // [B,V]
}

func (m *Model) newStepBuffers(batch int) *stepBuffers {
	B, D, I, V := batch, m.cfg.HiddenSize, m.cfg.IntermediateSize, m.cfg.VocabSize
	f := func(shape ...int) api.Tensor { return m.b.Alloc(api.F32, shape...) }
	return &stepBuffers{
		ids: tokens.NewStep(m.b, B),
		h:   f(B, D), u: f(B, D), x: f(B, D),
		f: f(B, D), a: f(B, D), in: f(B, D), g: f(B, D),
		fused: f(B, D), sel: f(B, D), o: f(B, D), out: f(B, D),
		gate: f(B, I), up: f(B, I), logits: f(B, V),
	}
}

// Step feeds one token per sequence through the recurrence and returns the
// logits [B,V], which belong to s and are overwritten by the next Step.
// After the first Step on a state it allocates nothing.
func (m *Model) Step(ctx context.Context, s api.State, ids []int32) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st.step == nil {
		st.step = m.newStepBuffers(st.batch)
	}
	sb, b := st.step, m.b
	if err := sb.ids.Upload(b, ids, m.cfg.VocabSize); err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	b.Gather(sb.h, m.embed.Weight.Value(), sb.ids.IDs)
	for l, ly := range m.layers {
		// Token mixer: s = f ⊙ s + (1-f) ⊙ silu(u W_i^T).
		b.RMSNorm(sb.u, sb.h, ly.attnNorm.Weight.Value(), ly.attnNorm.Eps)
		b.MatMul(sb.f, sb.u, ly.fProj.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSigmoid, sb.f, sb.f)
		b.Affine(sb.a, sb.f, -(1 - ly.lb), 1-ly.lb) // 1 - f
		b.Affine(sb.f, sb.f, 1-ly.lb, ly.lb)        // f
		b.MatMul(sb.in, sb.u, ly.iProj.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSilu, sb.in, sb.in)
		b.Binary(api.OpMul, sb.a, sb.a, sb.in)
		state := st.s[l]
		b.Binary(api.OpMul, state, state, sb.f)
		b.Binary(api.OpAdd, state, state, sb.a)
		// Dense link: the layers below have already advanced to this token.
		fused := state
		if len(ly.sel) > 0 {
			b.Copy(sb.fused, state)
			for j, sel := range ly.sel {
				below := st.s[l-1-j]
				b.MatMul(sb.sel, below, sel.Weight.Value(), false, true, 1, 0)
				b.Unary(api.OpSigmoid, sb.sel, sb.sel)
				b.Binary(api.OpMul, sb.sel, sb.sel, below)
				b.Binary(api.OpAdd, sb.fused, sb.fused, sb.sel)
			}
			fused = sb.fused
		}
		b.RMSNorm(sb.o, fused, ly.gNorm.Weight.Value(), ly.gNorm.Eps)
		b.MatMul(sb.g, sb.u, ly.gProj.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSilu, sb.g, sb.g)
		b.Binary(api.OpMul, sb.o, sb.o, sb.g)
		b.MatMul(sb.out, sb.o, ly.oProj.Weight.Value(), false, true, 1, 0)
		b.Binary(api.OpAdd, sb.h, sb.h, sb.out)
		// SwiGLU MLP.
		b.RMSNorm(sb.x, sb.h, ly.mlpNorm.Weight.Value(), ly.mlpNorm.Eps)
		b.MatMul(sb.gate, sb.x, ly.gate.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSilu, sb.gate, sb.gate)
		b.MatMul(sb.up, sb.x, ly.up.Weight.Value(), false, true, 1, 0)
		b.Binary(api.OpMul, sb.gate, sb.gate, sb.up)
		b.MatMul(sb.out, sb.gate, ly.down.Weight.Value(), false, true, 1, 0)
		b.Binary(api.OpAdd, sb.h, sb.h, sb.out)
	}
	b.RMSNorm(sb.u, sb.h, m.norm.Weight.Value(), m.norm.Eps)
	head := m.lmHead
	if head == nil {
		head = m.embed.Weight
	}
	b.MatMul(sb.logits, sb.u, head.Value(), false, true, 1, 0)
	st.pos++
	return sb.logits, nil
}
