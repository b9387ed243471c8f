package retnet

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

// State is the recurrent cache of a batch of sequences: per layer the
// retention state S [B,H,dk,dv] (already scaled by the s_n normalisation of
// the recurrent form), and the number of tokens consumed, which sets the
// rotation angle and the decay normalisation of the next token. DenseRetNet
// needs nothing more: its dense links join layers at the same token. It
// implements api.State.
type State struct {
	m     *Model
	batch int
	lens  tokens.Lens  // tokens each sequence has consumed
	s     []api.Tensor // per layer [B,H,dk,dv]
	step  *stepBuffers // Step's buffers, made by the first Step
}

var _ api.State = (*State)(nil)

// NewState returns an empty state for batch sequences.
func (m *Model) NewState(batch int) (_ api.State, err error) {
	defer api.Recover(&err)
	if batch < 1 {
		return nil, fmt.Errorf("retnet: state for %d sequences: %w", batch, api.ErrShape)
	}
	c := m.cfg
	s := &State{m: m, batch: batch, lens: make(tokens.Lens, batch)}
	for range m.layers {
		s.s = append(s.s, m.b.Alloc(api.F32, batch, c.NumAttentionHeads, c.KeyHeadDim(), c.ValueHeadDim()))
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
	for _, t := range s.s {
		s.m.b.Fill(t, 0)
	}
	clear(s.lens)
	return nil
}

// Close does nothing: the state is Go memory.
func (s *State) Close() error { return nil }

// uniform returns the position of the state's sequences when they all
// stand at one (true as well for a nil State, at 0).
func (s *State) uniform() (int, bool) {
	if s == nil {
		return 0, true
	}
	return s.lens.Uniform()
}

// ownState checks that s is a State of m for batch sequences.
func (m *Model) ownState(s api.State, batch int) (*State, error) {
	st, ok := s.(*State)
	if !ok || st.m != m {
		return nil, fmt.Errorf("retnet: state %T was not made by this model: %w", s, api.ErrShape)
	}
	if batch != st.batch {
		return nil, fmt.Errorf("retnet: %d sequences for a state of %d: %w", batch, st.batch, api.ErrShape)
	}
	return st, nil
}

// stepBuffers are the tensors one Step writes into, made once per State.
// Widths: Dqk = H*dk, Dv = H*dv. The [B,·] buffers have [B,H,1,·] views for
// the rotation and retention kernels (one token: the same memory).
type stepBuffers struct {
	ids     *tokens.Step // the step\'s ids, I32 [B]
	h, u, y api.Tensor   // [B,d]
	q, k    api.Tensor   // [B,Dqk]
	q4, k4  api.Tensor   // [B,H,1,dk] views
	v, g    api.Tensor   // [B,Dv]
	v4      api.Tensor   // [B,H,1,dv] view of v
	o       api.Tensor   // [B,H,1,dv]
	o3      api.Tensor   // [B,H,dv] view of o
	on      api.Tensor   // [B,H,dv] group-normed output
	on2     api.Tensor   // [B,Dv] view of on
	logits  api.Tensor   // [B,V]

	f1, f2 api.Tensor // RetNet: FFN hidden [B,ffn]

	row *rowBuffers // one sequence's, for states at different positions

	hv           api.Tensor   // DenseRetNet: [B,2Dv]
	kRaw, vRaw   []api.Tensor // DenseRetNet: each layer's raw k [B,Dqk] and v [B,Dv]
	prevK, prevV []api.Tensor // DenseRetNet: the previous layers' raw k and v, nearest first
	kScr, vScr   []*dense.StepScratch
}

func (m *Model) newStepBuffers(batch int) *stepBuffers {
	c, b := m.cfg, m.b
	B, d, H, dk, dv := batch, c.HiddenSize, c.NumAttentionHeads, c.KeyHeadDim(), c.ValueHeadDim()
	Dqk, Dv := c.QueryKeyDim, c.ValueDim
	f := func(shape ...int) api.Tensor { return b.Alloc(api.F32, shape...) }
	s := &stepBuffers{
		ids: tokens.NewStep(b, B),
		h:   f(B, d), u: f(B, d), y: f(B, d), q: f(B, Dqk), k: f(B, Dqk), v: f(B, Dv), g: f(B, Dv),
		o: f(B, H, 1, dv), on: f(B, H, dv), logits: f(B, c.VocabSize),
	}
	s.q4, s.k4, s.v4 = b.Reshape(s.q, B, H, 1, dk), b.Reshape(s.k, B, H, 1, dk), b.Reshape(s.v, B, H, 1, dv)
	s.o3, s.on2 = b.Reshape(s.o, B, H, dv), b.Reshape(s.on, B, Dv)
	if !c.gau() {
		s.f1, s.f2 = f(B, c.FFNDim), f(B, c.FFNDim)
		return s
	}
	s.hv = f(B, 2*Dv)
	s.prevK, s.prevV = make([]api.Tensor, 0, c.Dense.M), make([]api.Tensor, 0, c.Dense.M)
	for _, l := range m.layers {
		s.kRaw = append(s.kRaw, f(B, Dqk))
		s.vRaw = append(s.vRaw, f(B, Dv))
		s.kScr = append(s.kScr, l.kLink.NewStepScratch(b, B, d))
		s.vScr = append(s.vScr, l.vLink.NewStepScratch(b, B, d))
	}
	return s
}

// Step feeds one token per sequence through the recurrent form and returns
// the logits [B,V], which belong to s and are overwritten by the next Step.
// It makes its buffers on the first Step of a State and none afterwards.
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
	if err := sb.ids.Upload(b, ids, c.VocabSize); err != nil {
		return nil, fmt.Errorf("%s: %w", c.ModelType, err)
	}
	b.Gather(sb.h, m.embed.Weight.Value(), sb.ids.IDs)
	if m.embedScale != 1 {
		b.Affine(sb.h, sb.h, m.embedScale, 0)
	}
	for i, l := range m.layers {
		b.RMSNorm(sb.u, sb.h, l.norm.Weight.Value(), l.norm.Eps)
		if c.gau() {
			m.gauStep(st, i, l)
		} else {
			m.msrStep(st, i, l)
		}
		b.Binary(api.OpAdd, sb.h, sb.h, sb.y)
		if !c.gau() {
			m.ffnStep(sb, l)
			b.Binary(api.OpAdd, sb.h, sb.h, sb.y)
		}
	}
	b.RMSNorm(sb.u, sb.h, m.norm.Weight.Value(), m.norm.Eps)
	head := m.head
	if head == nil {
		head = m.embed.Weight
	}
	b.MatMul(sb.logits, sb.u, head.Value(), false, true, 1, 0)
	st.lens.AddAll(1)
	return sb.logits, nil
}

// msrStep is msrBlock for one token per sequence: it reads sb.u and writes
// sb.y, advancing layer i's retention state.
func (m *Model) msrStep(st *State, i int, l *layer) {
	b, sb := m.b, st.step
	linear(b, sb.q, sb.u, l.q)
	linear(b, sb.k, sb.u, l.k)
	b.Affine(sb.k, sb.k, m.kScale, 0)
	linear(b, sb.v, sb.u, l.v)
	linear(b, sb.g, sb.u, l.g)
	b.Unary(api.OpSilu, sb.g, sb.g)
	m.retainStep(st, i, nil)
	b.Binary(api.OpMul, sb.on2, sb.g, sb.on2)
	linear(b, sb.y, sb.on2, l.out)
}

// ffnStep is ffn for one token per sequence: it reads sb.h and writes sb.y.
func (m *Model) ffnStep(sb *stepBuffers, l *layer) {
	b := m.b
	b.RMSNorm(sb.u, sb.h, l.ffnNorm.Weight.Value(), l.ffnNorm.Eps)
	linear(b, sb.f1, sb.u, l.fc1)
	b.Unary(api.OpSilu, sb.f1, sb.f1)
	linear(b, sb.f2, sb.u, l.gate)
	b.Binary(api.OpMul, sb.f1, sb.f1, sb.f2)
	linear(b, sb.y, sb.f1, l.fc2)
}

// gauStep is gauBlock for one token per sequence: it reads sb.u and writes
// sb.y, advancing layer i's retention state.
func (m *Model) gauStep(st *State, i int, l *layer) {
	b, c, sb := m.b, m.cfg, st.step
	e := c.ValueDim
	linear(b, sb.q, sb.u, l.q)
	b.Unary(api.OpSilu, sb.q, sb.q)
	kRaw, vRaw := sb.kRaw[i], sb.vRaw[i]
	linear(b, kRaw, sb.u, l.k)
	b.Unary(api.OpSilu, kRaw, kRaw)
	b.Affine(kRaw, kRaw, m.kScale, 0)
	linear(b, sb.hv, sb.u, l.toHidden)
	b.Unary(api.OpSilu, sb.hv, sb.hv)
	b.Slice(vRaw, sb.hv, 1, 0)
	b.Slice(sb.g, sb.hv, 1, e)

	sb.prevK, sb.prevV = sb.prevK[:0], sb.prevV[:0]
	for p := i - 1; p >= max(0, i-c.Dense.M); p-- {
		sb.prevK = append(sb.prevK, sb.kRaw[p])
		sb.prevV = append(sb.prevV, sb.vRaw[p])
	}
	m.fuseStep(sb.k, i, l.kLink, sb.kScr[i], l.kNorm, kRaw, sb.prevK, sb.u)
	m.fuseStep(sb.v, i, l.vLink, sb.vScr[i], l.vNorm, vRaw, sb.prevV, sb.u)
	m.retainStep(st, i, l.groupNorm)
	b.Binary(api.OpMul, sb.on2, sb.on2, sb.g)
	linear(b, sb.y, sb.on2, l.out)
}

// fuseStep is fuse for one token per sequence at layer i, writing into dst
// [B,W] the fused x [B,W] (x itself at the first layer).
func (m *Model) fuseStep(dst api.Tensor, i int, link *dense.Link, scr *dense.StepScratch, norm *nn.Var, x api.Tensor, prev []api.Tensor, u api.Tensor) {
	b := m.b
	switch {
	case i > 0 && len(prev) > 0:
		b.Copy(dst, link.FuseStep(b, scr, x, prev, u))
	case i > 0 && norm != nil:
		b.RMSNorm(dst, x, norm.Value(), float32(m.cfg.RMSNormEps))
	default:
		b.Copy(dst, x)
	}
}

// rowBuffers hold one sequence's slice of the step's q, k, v, output and
// retention state, for sequences at different positions.
type rowBuffers struct{ q, k, v, o, s api.Tensor }

// retainStep is retain for one token per sequence: it rotates sb.q and
// sb.k in place, runs the recurrent form on them and sb.v from layer i's
// state (which it advances), and writes the per-head RMS-normed output
// (weight gn, nil for none) into sb.on. Sequences at different positions
// (after a Prefill of different lengths) run one at a time.
func (m *Model) retainStep(st *State, i int, gn *nn.Var) {
	b, sb := m.b, st.step
	if pos, ok := st.lens.Uniform(); ok {
		retainRows(b, m, sb.q4, sb.k4, sb.v4, sb.o, st.s[i], pos)
	} else {
		c := m.cfg
		if sb.row == nil {
			H, dk, dv := c.NumAttentionHeads, c.KeyHeadDim(), c.ValueHeadDim()
			sb.row = &rowBuffers{q: b.Alloc(api.F32, 1, H, 1, dk), k: b.Alloc(api.F32, 1, H, 1, dk),
				v: b.Alloc(api.F32, 1, H, 1, dv), o: b.Alloc(api.F32, 1, H, 1, dv), s: b.Alloc(api.F32, 1, H, dk, dv)}
		}
		r := sb.row
		for row, pos := range st.lens {
			b.Slice(r.q, sb.q4, 0, row)
			b.Slice(r.k, sb.k4, 0, row)
			b.Slice(r.v, sb.v4, 0, row)
			b.Slice(r.s, st.s[i], 0, row)
			retainRows(b, m, r.q, r.k, r.v, r.o, r.s, pos)
			b.SetSlice(sb.o, r.o, 0, row)
			b.SetSlice(st.s[i], r.s, 0, row)
		}
	}
	var w api.Tensor
	if gn != nil {
		w = gn.Value()
	}
	b.RMSNorm(sb.on, sb.o3, w, float32(m.cfg.RMSNormEps))
}

// linear sets dst [B,out] = x [B,in] W^T.
func linear(b api.Backend, dst, x api.Tensor, l *nn.Linear) {
	b.MatMul(dst, x, l.Weight.Value(), false, true, 1, 0)
}

// retainRows rotates q and k [B,H,1,dk] in place to position pos and runs
// the recurrent form on them and v into o, advancing the state s in place
// (it is read and written once).
func retainRows(b api.Backend, m *Model, q, k, v, o, s api.Tensor, pos int) {
	nn.RotaryInto(b, q, q, m.theta, pos, false)
	nn.RotaryInto(b, k, k, m.theta, pos, false)
	nn.RetentionInto(b, api.RetentionRecurrent, o, s, api.RetentionArgs{
		Q: q, K: k, V: v, S0: s, Gamma: m.gamma, Offset: pos,
	})
}
