package mamba

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

// State is the recurrent cache of a batch of sequences: per layer the last
// K-1 raw conv inputs [B,K-1,E] (channels last; Hugging Face keeps the last
// K in [B,E,K], and the oldest of those never reaches an output) and the SSM
// state [B,E,N]. Its size does not depend on the sequence length. It
// implements api.State.
type State struct {
	m     *Model
	batch int
	lens  tokens.Lens  // tokens each sequence has consumed
	conv  []api.Tensor // per layer [B,K-1,E]
	ssm   []api.Tensor // per layer [B,E,N]
	step  *stepBuffers // Step's buffers, made by the first Step
}

var _ api.State = (*State)(nil)

// NewState returns an empty state for batch sequences.
func (m *Model) NewState(batch int) (_ api.State, err error) {
	defer api.Recover(&err)
	if batch < 1 {
		return nil, fmt.Errorf("mamba: state for %d sequences: %w", batch, api.ErrShape)
	}
	c := m.cfg
	s := &State{m: m, batch: batch, lens: make(tokens.Lens, batch)}
	for range m.layers {
		s.conv = append(s.conv, m.b.Alloc(api.F32, batch, c.ConvKernel-1, c.IntermediateSize))
		s.ssm = append(s.ssm, m.b.Alloc(api.F32, batch, c.IntermediateSize, c.StateSize))
	}
	return s, nil
}

// Batch returns the number of sequences.
func (s *State) Batch() int { return s.batch }

// Len returns the number of tokens consumed per sequence (the most any
// has, after a Prefill of sequences of different lengths).
func (s *State) Len() int { return s.lens.Max() }

// Lens returns the tokens each sequence has consumed (api.SequenceLens).
func (s *State) Lens() []int { return append([]int(nil), s.lens...) }

// Reset zeroes the state.
func (s *State) Reset() (err error) {
	defer api.Recover(&err)
	for i := range s.conv {
		s.m.b.Fill(s.conv[i], 0)
		s.m.b.Fill(s.ssm[i], 0)
	}
	clear(s.lens)
	return nil
}

// Close does nothing: the state is Go memory.
func (s *State) Close() error { return nil }

// ownState checks that s is a State of m for batch sequences.
func (m *Model) ownState(s api.State, batch int) (*State, error) {
	st, ok := s.(*State)
	if !ok || st.m != m {
		return nil, fmt.Errorf("mamba: state %T was not made by this model: %w", s, api.ErrShape)
	}
	if batch != st.batch {
		return nil, fmt.Errorf("mamba: %d sequences for a state of %d: %w", batch, st.batch, api.ErrShape)
	}
	return st, nil
}

// stepBuffers are the tensors one Step writes into, made once per State.
// The 2-D [B,·] buffers have 3-D [B,1,·] views for the sequence kernels.
type stepBuffers struct {
	ids                  *tokens.Step // the step\'s ids, I32 [B]
	h, u, out            api.Tensor   // [B,D]
	xz                   api.Tensor   // [B,2E]
	x, z, xc, xs, delta  api.Tensor   // [B,E]
	y, gate              api.Tensor   // [B,E]
	x3, xc3, xs3, delta3 api.Tensor   // [B,1,E] views
	y3                   api.Tensor   // [B,1,E] view of y
	dbc                  api.Tensor   // [B,R+2N]
	dt                   api.Tensor   // [B,R]
	bm, cm               api.Tensor   // [B,1,N]
	a                    []api.Tensor // per layer A = -exp(A_log) [E,N] (see setA)
	aGen                 uint64       // the parameters' Generation a was computed at
	shift                api.Tensor   // [B,K-2,E], nil when K < 2
	logits               api.Tensor   // [B,V]
	convW                []api.Tensor
	raws                 []api.Tensor // DenseMamba: each layer's pre-fusion x' [B,E]
	prev                 []api.Tensor // DenseMamba: the previous layers' x', nearest first
	scratch              []*dense.StepScratch
	fusedXs, fusedXs3    api.Tensor   // DenseMamba: fused x' [B,E] and its view
	states               []api.Tensor // DenseMamba target h: each layer's own state [B,1,E,N]
	inject               api.Tensor   // DenseMamba target h: [B,1,E,N]
	gate4                []api.Tensor // DenseMamba target h: [B,1,E,1] views of each layer's gate
	bm2, cm2             api.Tensor   // [B,N] views of bm, cm
}

func (m *Model) newStepBuffers(batch int) *stepBuffers {
	c, b := m.cfg, m.b
	B, D, E, N, R, K, V := batch, c.HiddenSize, c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel, c.VocabSize
	f := func(shape ...int) api.Tensor { return b.Alloc(api.F32, shape...) }
	s := &stepBuffers{
		ids: tokens.NewStep(b, B),
		h:   f(B, D), u: f(B, D), out: f(B, D), xz: f(B, 2*E),
		x: f(B, E), z: f(B, E), xc: f(B, E), xs: f(B, E), delta: f(B, E), y: f(B, E), gate: f(B, E),
		dbc: f(B, R+2*N), dt: f(B, R), bm: f(B, 1, N), cm: f(B, 1, N),
		logits: f(B, V),
	}
	s.x3, s.xc3, s.xs3 = b.Reshape(s.x, B, 1, E), b.Reshape(s.xc, B, 1, E), b.Reshape(s.xs, B, 1, E)
	s.delta3, s.y3 = b.Reshape(s.delta, B, 1, E), b.Reshape(s.y, B, 1, E)
	s.bm2, s.cm2 = b.Reshape(s.bm, B, N), b.Reshape(s.cm, B, N)
	if K >= 2 {
		s.shift = f(B, K-2, E)
	}
	for _, l := range m.layers {
		s.convW = append(s.convW, b.Reshape(l.conv.Weight.Value(), E, K))
		s.a = append(s.a, f(E, N))
	}
	s.setA(m)
	if c.Dense.M > 0 {
		s.fusedXs = f(B, E)
		s.fusedXs3 = b.Reshape(s.fusedXs, B, 1, E)
		s.prev = make([]api.Tensor, 0, c.Dense.M)
		if c.DenseTarget == TargetH {
			s.inject = f(B, 1, E, N)
		}
		for _, l := range m.layers {
			if c.DenseTarget == TargetH {
				s.states = append(s.states, f(B, 1, E, N))
			} else {
				s.raws = append(s.raws, f(B, E))
			}
			var scr *dense.StepScratch
			if l.link != nil {
				scr = l.link.NewStepScratch(b, B, D)
			}
			s.scratch = append(s.scratch, scr)
			var g4 api.Tensor
			if scr != nil && scr.Gate() != nil {
				g4 = b.Reshape(scr.Gate(), B, 1, E, 1)
			}
			s.gate4 = append(s.gate4, g4)
		}
	}
	return s
}

// setA sets each layer's A = -exp(A_log), which the steps read: it only
// changes with the weights (computing it every step cost 7% of a step
// with 8-bit weights), so Step calls it again only when the parameters'
// Generation has moved.
func (s *stepBuffers) setA(m *Model) {
	for i, l := range m.layers {
		m.b.Unary(api.OpExp, s.a[i], l.aLog.Value())
		m.b.Unary(api.OpNeg, s.a[i], s.a[i])
	}
	s.aGen = m.params.Generation()
}

// Step feeds one token per sequence through the recurrent form and returns
// the logits [B,V], which belong to s and are overwritten by the next Step.
// After the first Step on a state it allocates nothing. A = -exp(A_log) is
// kept from step to step, and computed again after WriteParams or a
// training step (LossAndGrad); weights written straight into the tensors
// of Parameters in between reach a Step only after one of those.
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
	sb, b, c := st.step, m.b, m.cfg
	if sb.aGen != m.params.Generation() {
		sb.setA(m)
	}
	if err := sb.ids.Upload(b, ids, c.VocabSize); err != nil {
		return nil, fmt.Errorf("mamba: %w", err)
	}
	b.Gather(sb.h, m.embed.Weight.Value(), sb.ids.IDs)
	for i, l := range m.layers {
		b.RMSNorm(sb.u, sb.h, l.norm.Weight.Value(), l.norm.Eps)
		m.mixerStep(st, i, l)
		b.Binary(api.OpAdd, sb.h, sb.h, sb.out)
	}
	b.RMSNorm(sb.u, sb.h, m.normF.Weight.Value(), m.normF.Eps)
	b.MatMul(sb.logits, sb.u, m.head().Value(), false, true, 1, 0)
	st.lens.AddAll(1)
	return sb.logits, nil
}

// mixerStep is mixer for one token per sequence: it reads sb.u and writes
// sb.out, advancing layer i's conv and SSM states.
func (m *Model) mixerStep(st *State, i int, l *layer) {
	b, c, sb := m.b, m.cfg, st.step
	E, R, N, K := c.IntermediateSize, c.TimeStepRank, c.StateSize, c.ConvKernel
	linear(b, sb.xz, sb.u, l.inProj)
	b.Slice(sb.x, sb.xz, 1, 0)
	b.Slice(sb.z, sb.xz, 1, E)

	var convBias api.Tensor
	if l.conv.Bias != nil {
		convBias = l.conv.Bias.Value()
	}
	conv := st.conv[i]
	nn.CausalConv1dInto(b, sb.xc3, sb.x3, sb.convW[i], convBias, conv)
	if K >= 2 { // conv state <- [conv[:,1:]; x]
		b.Slice(sb.shift, conv, 1, 1)
		b.SetSlice(conv, sb.shift, 1, 0)
		b.SetSlice(conv, sb.x3, 1, K-2)
	}
	b.Unary(api.OpSilu, sb.xs, sb.xc)

	xs, xs3 := sb.xs, sb.xs3
	var states, inject api.Tensor // DenseMamba target h
	if c.Dense.M > 0 {
		// The previous layers' x' or states, nearest first.
		own := sb.raws
		if c.DenseTarget == TargetH {
			own = sb.states
			states = sb.states[i]
		}
		sb.prev = sb.prev[:0]
		for p := i - 1; p >= max(0, i-c.Dense.M); p-- {
			sb.prev = append(sb.prev, own[p])
		}
		switch {
		case c.DenseTarget == TargetX:
			b.Copy(sb.raws[i], sb.xs)
			if l.link != nil {
				b.Copy(sb.fusedXs, l.link.FuseStep(b, sb.scratch[i], sb.xs, sb.prev, sb.u))
				xs, xs3 = sb.fusedXs, sb.fusedXs3
			}
		case l.link != nil && len(sb.prev) > 0:
			inject = sb.inject
			b.Copy(inject, sb.prev[0])
			for _, p := range sb.prev[1:] {
				b.Binary(api.OpAdd, inject, inject, p)
			}
			if l.link.GateStep(b, sb.scratch[i], sb.u) != nil {
				b.Binary(api.OpMul, inject, sb.gate4[i], inject)
			}
		}
	}

	linear(b, sb.dbc, xs, l.xProj)
	b.Slice(sb.dt, sb.dbc, 1, 0)
	b.Slice(sb.bm2, sb.dbc, 1, R)
	b.Slice(sb.cm2, sb.dbc, 1, R+N)
	linear(b, sb.delta, sb.dt, l.dtProj)
	b.Unary(api.OpSoftplus, sb.delta, sb.delta)
	nn.SelectiveScanInto(b, sb.y3, st.ssm[i], states, api.ScanArgs{
		X: xs3, Delta: sb.delta3, A: sb.a[i], Bm: sb.bm, Cm: sb.cm, D: l.d.Value(), H0: st.ssm[i], Inject: inject,
	})
	b.Unary(api.OpSilu, sb.gate, sb.z)
	b.Binary(api.OpMul, sb.y, sb.y, sb.gate)
	linear(b, sb.out, sb.y, l.outProj)
}

// linear sets dst [B,out] = x [B,in] W^T (+ bias).
func linear(b api.Backend, dst, x api.Tensor, l *nn.Linear) {
	b.MatMul(dst, x, l.Weight.Value(), false, true, 1, 0)
	if l.Bias != nil {
		b.Binary(api.OpAdd, dst, dst, l.Bias.Value())
	}
}
