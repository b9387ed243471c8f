// Package mamba implements Mamba (v1) as Hugging Face transformers'
// MambaForCausalLM computes it, and DenseMamba, Mamba with dense hidden
// connections (specs/models.md §1, §4, §5). Importing the package registers
// the architectures "mamba" and "densemamba".
//
// A model runs in three ways that give the same logits: Forward (the
// parallel selective scan over whole sequences), Prefill (the same, carrying
// a recurrent State), and Step (one token per sequence from the State,
// allocating nothing once warm).
package mamba

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

func init() {
	api.RegisterArchitecture(architecture{NameMamba})
	api.RegisterArchitecture(architecture{NameDenseMamba})
}

type architecture struct{ name string }

func (a architecture) Name() string              { return a.name }
func (a architecture) DefaultConfig() api.Config { return DefaultConfig(a.name) }
func (a architecture) ParseConfig(data []byte) (api.Config, error) {
	return ParseConfig(a.name, data)
}

func (a architecture) New(ctx context.Context, cfg api.Config, opts api.BuildOptions) (api.Model, error) {
	c, err := a.config(cfg)
	if err != nil {
		return nil, err
	}
	if err := api.CheckWeights(opts.Weights); err != nil {
		return nil, fmt.Errorf("%s: %w", a.name, err)
	}
	b, err := opts.OpenBackend()
	if err != nil {
		return nil, err
	}
	if opts.Zeros {
		return build(c, nn.NewUninitializedParams(b).WithWeights(opts.WeightDType()))
	}
	return build(c, nn.NewParams(b, opts.Seed).WithContext(ctx).WithWeights(opts.WeightDType()))
}

// config returns cfg as this architecture's configuration.
func (a architecture) config(cfg api.Config) (*Config, error) {
	c, ok := cfg.(*Config)
	if !ok || c.ModelType != a.name {
		return nil, fmt.Errorf("%s: config %T for %q: %w", a.name, cfg, cfg.ArchName(), api.ErrConfig)
	}
	return c, nil
}

// Model is a Mamba or DenseMamba language model. It implements
// api.Trainable.
type Model struct {
	cfg            *Config
	b              api.Backend
	params         *nn.Params
	nn.ModelParams // Backend, Parameters, Params, ReadParams, WriteParams, Grads, ZeroGrad
	embed          *nn.Embedding
	layers         []*layer
	normF          *nn.RMSNorm
	lmHead         *nn.Var // [V, D]; nil when tied to the embedding
}

var _ api.Trainable = (*Model)(nil)

// layer is one residual block: RMSNorm then the mixer.
type layer struct {
	norm    *nn.RMSNorm
	inProj  *nn.Linear // [2E, D]
	conv    *nn.CausalConv1d
	xProj   *nn.Linear // [R+2N, E]
	dtProj  *nn.Linear // [E, R] with bias [E]
	aLog    *nn.Var    // [E, N]
	d       *nn.Var    // [E]
	outProj *nn.Linear // [D, E]
	link    *dense.Link
}

// New builds a model with parameters initialised as the reference does for
// training from scratch (specs/models.md §1 "Init"), seeded by seed.
func New(cfg *Config, b api.Backend, seed int64) (*Model, error) {
	return build(cfg, nn.NewParams(b, seed))
}

// build builds the model cfg describes with its parameters in params
// (initialised, or not: see nn.NewUninitializedParams).
func build(cfg *Config, params *nn.Params) (_ *Model, err error) {
	defer api.Recover(&err)
	b := params.Backend()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := *cfg
	m := &Model{cfg: &c, b: b, params: params, ModelParams: nn.NewModelParams(params)}
	D, E, N, R, K := c.HiddenSize, c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel
	eps := float32(c.LayerNormEpsilon)
	var bias nn.Init
	if c.UseBias {
		bias = nn.Zeros()
	}
	var convBias nn.Init
	if c.UseConvBias {
		convBias = nn.FanInUniform(K)
	}
	root := m.params.Scope()
	bb := root.Sub("backbone")
	m.embed = nn.NewEmbedding(bb.Sub("embeddings"), c.VocabSize, D, nn.Normal(0.02))
	for i := range c.NumHiddenLayers {
		s := bb.Sub("layers").Index(i)
		mx := s.Sub("mixer")
		l := &layer{
			norm:    nn.NewRMSNorm(s.Sub("norm"), D, eps),
			inProj:  nn.NewLinear(mx.Sub("in_proj"), D, 2*E, nn.FanInUniform(D), bias),
			conv:    nn.NewCausalConv1d(mx.Sub("conv1d"), E, K, nn.FanInUniform(K), convBias),
			xProj:   nn.NewLinear(mx.Sub("x_proj"), E, R+2*N, nn.FanInUniform(E), nil),
			dtProj:  nn.NewLinear(mx.Sub("dt_proj"), R, E, initDtProjWeight(R, float64(c.TimeStepScale)), initDtBias(float64(c.TimeStepMin), float64(c.TimeStepMax), float64(c.TimeStepFloor))),
			aLog:    mx.Param("A_log", initALog(), E, N),
			d:       mx.Param("D", nn.Ones(), E),
			outProj: nn.NewLinear(mx.Sub("out_proj"), E, D, nn.Scaled(nn.FanInUniform(E), 1/math.Sqrt(float64(max(c.NumHiddenLayers, 1)))), bias),
		}
		if c.Dense.M > 0 && i > 0 {
			l.link = dense.NewLink(mx, c.Dense, dense.DefaultNames, D, E, eps, 0.02)
		}
		m.layers = append(m.layers, l)
	}
	m.normF = nn.NewRMSNorm(bb.Sub("norm_f"), D, eps)
	if !c.TieWordEmbeddings {
		m.lmHead = root.Matrix("lm_head.weight", nn.Normal(0.02), c.VocabSize, D)
	}
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() api.Config { return m.cfg }

// Info reports the model's capabilities: the parallel and recurrent modes,
// trainable, in process.
func (m *Model) Info() api.Info {
	return api.Info{Arch: m.cfg.ModelType, Backend: m.b.Name(), Threads: m.b.Threads(),
		Modes:     []api.Mode{api.Parallel, api.Chunkwise, api.Recurrent},
		Trainable: m.params.Weights() == api.F32, Local: true, Weights: m.params.Weights(), Snapshots: true, Packed: true}
}

// Close does nothing: the parameters are Go memory.
func (m *Model) Close() error { return nil }

// Forward returns the logits [B,T,V] of whole sequences in form f. The
// chunkwise form is the parallel scan run a block of f.Chunk tokens at a
// time (the whole sequence when f.Chunk is 0), carrying the recurrent
// state: the activations' memory then grows with the block, not the
// sequence. Sequences may have different lengths (api.Layout): the
// parallel form runs them padded, the convolution and scan of each
// sequence apart; the other forms run each length as its own batch.
func (m *Model) Forward(ctx context.Context, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("mamba: %w", err)
	}
	ragged := api.Ragged(ids)
	if ragged && f.Mode != api.Parallel {
		return api.ForwardEach(ctx, m, ids, f)
	}
	if f.Mode != api.Parallel {
		return api.ForwardWith(ctx, m, ids, f)
	}
	lay, tok, err := m.upload(ids)
	if err != nil {
		return nil, err
	}
	out, err := m.run(ctx, nn.NewInferenceTape(m.b), tok, pass{lay: lay})
	if err != nil {
		return nil, err
	}
	return nn.MaskPadding(m.b, out.Value(), lay), nil
}

// upload checks ids, of one length or several, and uploads them padded to
// the longest, with their layout.
func (m *Model) upload(ids [][]int32) (api.Layout, api.Tensor, error) {
	lay, err := api.LayoutOf(ids)
	if err != nil {
		return api.Layout{}, nil, fmt.Errorf("mamba: %w", err)
	}
	tok, _, err := tokens.Batch(m.b, lay.Padded(ids, 0), m.cfg.VocabSize)
	if err != nil {
		return api.Layout{}, nil, fmt.Errorf("mamba: %w", err)
	}
	return lay, tok, nil
}

// Prefill runs ids through form f from s (see Forward), leaves s ready for
// Step, and returns the logits [B,T,V].
func (m *Model) Prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("mamba: %w", err)
	}
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	if api.Ragged(ids) && f.Mode != api.Parallel {
		return nil, fmt.Errorf("mamba: %s prefill of sequences of different lengths: they prefill in the parallel form: %w", f.Mode, api.ErrShape)
	}
	return api.PrefillForms(ctx, m, s, ids, f, func(ctx context.Context, ids [][]int32) (api.Tensor, error) {
		return m.prefill(ctx, st, ids)
	})
}

// prefill is the parallel form continued from st. Sequences of different
// lengths each continue their own state and leave it at their own end.
func (m *Model) prefill(ctx context.Context, st *State, ids [][]int32) (api.Tensor, error) {
	lay, tok, err := m.upload(ids)
	if err != nil {
		return nil, err
	}
	out, err := m.run(ctx, nn.NewInferenceTape(m.b), tok, pass{st: st, lay: lay})
	if err != nil {
		return nil, err
	}
	st.lens.Add(ids)
	return nn.MaskPadding(m.b, out.Value(), lay), nil
}

// LossAndGrad runs the parallel form on batch, returns the mean
// cross-entropy over targets that are not api.IgnoreIndex, and adds its
// gradient to every parameter's. Rows may have different lengths and
// document starts (api.Layout): each document's convolution and scan
// start from an empty state.
func (m *Model) LossAndGrad(ctx context.Context, batch api.Batch) (_ float64, err error) {
	defer api.Recover(&err)
	if err := nn.CheckTrainable(m.params); err != nil {
		return 0, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	m.params.Changed() // the optimizer updates the weights next
	in, err := tokens.Upload(m.b, batch, m.cfg.VocabSize)
	if err != nil {
		return 0, fmt.Errorf("mamba: %w", err)
	}
	t := nn.NewTape(m.b)
	mark := t.Mark()
	logits, err := m.run(ctx, t, in.Inputs, pass{lay: in.Layout})
	if err != nil {
		return 0, err
	}
	loss := t.CrossEntropy(logits, in.Targets)
	value := api.Float32s(loss.Value())[0]
	t.Backward(loss)
	t.Release(mark) // the step's activations, for the next step to reuse
	return float64(value), nil
}

// ForwardInto implements api.ForwardIntoModel: the parallel form's logits
// written into dst [B,T,V].
func (m *Model) ForwardInto(ctx context.Context, dst api.Tensor, ids [][]int32) (err error) {
	defer api.Recover(&err)
	tok, _, err := tokens.Batch(m.b, ids, m.cfg.VocabSize)
	if err != nil {
		return fmt.Errorf("mamba: %w", err)
	}
	t := nn.NewInferenceTape(m.b)
	mark := t.Mark()
	defer t.Release(mark)
	h, err := m.hidden(ctx, t, tok, pass{})
	if err != nil {
		return err
	}
	nn.LinearInto(m.b, dst, h.Value(), m.head().Value())
	return nil
}

// PrefillLast is Prefill returning only the logits of the last position
// of each sequence, [B,V] (what a decoder samples from): the final norm and
// the output projection run on that row alone, so a long prompt costs
// neither [B,T,V] logits nor the products that make them. The chunkwise
// form runs the parallel scan a block of f.Chunk tokens at a time (the
// whole sequence when 0), freeing each block's activations before the
// next, so its memory grows with the block, not the sequence; the
// recurrent form steps.
func (m *Model) PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("mamba: %w", err)
	}
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	T := len(ids[0])
	if T == 0 {
		return nil, fmt.Errorf("mamba: prefill of no tokens has no last logits: %w", api.ErrShape)
	}
	if f.Mode == api.Recurrent {
		return nn.StepLast(ctx, m, s, ids)
	}
	chunk := T
	if f.Mode == api.Chunkwise && f.Chunk > 0 {
		chunk = min(f.Chunk, T)
	}
	block := make([][]int32, len(ids))
	for from := 0; ; from += chunk {
		n := min(chunk, T-from)
		for b, seq := range ids {
			if len(seq) != T {
				return nil, fmt.Errorf("mamba: sequence %d has %d tokens, sequence 0 has %d: %w", b, len(seq), T, api.ErrShape)
			}
			block[b] = seq[from : from+n]
		}
		tok, _, err := tokens.Batch(m.b, block, m.cfg.VocabSize)
		if err != nil {
			return nil, fmt.Errorf("mamba: %w", err)
		}
		t := nn.NewInferenceTape(m.b)
		mark := t.Mark()
		h, err := m.residual(ctx, t, tok, pass{st: st})
		if err != nil {
			t.Release(mark)
			return nil, err
		}
		st.lens.AddAll(n)
		if from+n == T {
			last := m.normF.Forward(t, t.Slice(h, 1, n-1, 1)) // [B,1,D]
			out := t.Linear(last, m.head(), nil)              // [B,1,V]
			t.Release(mark, out)
			return m.b.Reshape(out.Value(), len(ids), m.cfg.VocabSize), nil
		}
		t.Release(mark)
	}
}

// pass says where a run of the parallel form starts and how its batch is
// laid out.
type pass struct {
	// st, when set, is the State the run continues from and updates.
	st *State
	// lay is the batch's layout (zero: one piece of everything): the
	// convolution and the scan run over each piece apart, each from an
	// empty state, from init, or from its rows of st (pieces of padding
	// from an empty state, leaving st as it is).
	lay api.Layout
	// init, when set, is a learnable initial state (state tuning).
	init *initVars
}

// initVars is a learnable initial state on the tape: per layer the conv
// window [1,K-1,E] and the SSM state [1,E,N], broadcast to every piece.
type initVars struct{ conv, ssm []*nn.Var }

// run computes the logits [B,T,V] for ids [B,T] on tape t as p says.
//
// On an inference tape it frees its intermediates as it goes (each layer's
// when the layer is done, nn.Tape.Release): only the logits stay.
func (m *Model) run(ctx context.Context, t *nn.Tape, ids api.Tensor, p pass) (*nn.Var, error) {
	mark := t.Mark()
	h, err := m.hidden(ctx, t, ids, p)
	if err != nil {
		t.Release(mark)
		return nil, err
	}
	out := t.Linear(h, m.head(), nil)
	t.Release(mark, out)
	return out, nil
}

// head returns the output projection [V,D]: lm_head, or the embedding when
// they are tied.
func (m *Model) head() *nn.Var {
	if m.lmHead == nil {
		return m.embed.Weight
	}
	return m.lmHead
}

// hidden computes the final normed hidden states [B,T,D] for ids [B,T] on
// tape t (see run).
func (m *Model) hidden(ctx context.Context, t *nn.Tape, ids api.Tensor, p pass) (*nn.Var, error) {
	h, err := m.residual(ctx, t, ids, p)
	if err != nil {
		return nil, err
	}
	return m.normF.Forward(t, h), nil
}

// residual computes the residual stream after the last layer [B,T,D] for
// ids [B,T] on tape t (see run), before the final norm. It frees each
// layer's intermediates once the layer is done, keeping the stream and
// what DenseMamba's later layers read (on a recording tape nothing is
// freed); the caller releases what remains.
func (m *Model) residual(ctx context.Context, t *nn.Tape, ids api.Tensor, p pass) (*nn.Var, error) {
	c := m.cfg
	pieces := nn.PiecesOf(ids.Shape(), p.lay)
	mark := t.Mark()
	h := m.embed.Forward(t, ids) // [B,T,D]
	var linked []*nn.Var         // DenseMamba: the layers' own x' or states, nearest last
	for i, l := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out, own := m.mixer(t, l, i, l.norm.Forward(t, h), linked, p, pieces)
		if c.Dense.M > 0 {
			linked = append(linked, own)
			if len(linked) > c.Dense.M {
				linked = linked[1:]
			}
		}
		h = t.Add(h, out)
		t.Release(mark, append(linked, h)...)
	}
	return h, nil
}

// mixer computes layer i's mixer on u [B,T,D] (already normed). prev holds
// what the previous layers hand on (nearest last): for DenseMamba target x
// their pre-fusion x' [B,T,E], for target h their pre-fusion states
// [B,T,E,N]. It returns the output [B,T,D] and what this layer hands on
// (nil for plain Mamba). The convolution and the scan run over each of
// pieces apart, each from p.init, from its rows of p.st's states (which it
// updates), or from an empty state.
func (m *Model) mixer(t *nn.Tape, l *layer, i int, u *nn.Var, prev []*nn.Var, p pass, pieces []api.Piece) (out, own *nn.Var) {
	st := p.st
	c := m.cfg
	E, N, R, K := c.IntermediateSize, c.StateSize, c.TimeStepRank, c.ConvKernel
	// On an inference tape the mixer frees what it no longer needs at
	// three points, so that it holds a few [B,T,E] tensors at a time
	// rather than all of its own (the layer's caller frees the rest).
	mark := t.Mark()
	xz := l.inProj.Forward(t, u) // [B,T,2E]
	x := t.Slice(xz, -1, 0, E)
	z := t.Slice(xz, -1, E, E)
	t.Release(mark, x, z)
	// start returns the state a piece starts from: init's, its rows of
	// the State's tensors held (updated by the piece unless it is
	// padding), or none.
	start := func(pc api.Piece, init []*nn.Var, held []api.Tensor) *nn.Var {
		switch {
		case p.init != nil:
			return t.Broadcast(init[i], pc.Rows)
		case held == nil || pc.Pad:
			return nil
		}
		v := nn.NewVar(held[i], false)
		if pc.Rows == v.Shape()[0] {
			return v
		}
		return t.Slice(v, 0, pc.Row, pc.Rows)
	}
	var initConv, initSSM []*nn.Var
	if p.init != nil {
		initConv, initSSM = p.init.conv, p.init.ssm
	}
	var stConv, stSSM []api.Tensor
	if st != nil {
		stConv, stSSM = st.conv, st.ssm
	}
	conv := t.MapPieces(pieces, []*nn.Var{x}, func(pc api.Piece, in []*nn.Var) []*nn.Var {
		prev := start(pc, initConv, stConv)
		y := l.conv.Forward(t, in[0], prev)
		if st != nil && !pc.Pad {
			// The new conv state is the last K-1 raw inputs of [prev; x].
			all := t.Concat(1, prev, in[0])
			T := all.Shape()[1]
			m.b.SetSlice(st.conv[i], t.Slice(all, 1, T-(K-1), K-1).Value(), 0, pc.Row)
		}
		return []*nn.Var{y}
	})[0]
	xs := t.Unary(api.OpSilu, conv) // x' [B,T,E]
	t.Release(mark, z, xs)
	targetH := c.Dense.M > 0 && c.DenseTarget == TargetH
	if c.Dense.M > 0 && !targetH {
		own = xs
		if l.link != nil {
			xs = l.link.Fuse(t, xs, nearestFirst(prev), l.link.Gate(t, u))
		}
	}
	var inject *nn.Var
	if targetH && l.link != nil && len(prev) > 0 {
		inject = stateInjection(t, l.link, u, prev)
	}
	dbc := l.xProj.Forward(t, xs) // [B,T,R+2N]
	dt := t.Slice(dbc, -1, 0, R)
	bm := t.Slice(dbc, -1, R, N)
	cm := t.Slice(dbc, -1, R+N, N)
	delta := t.Unary(api.OpSoftplus, l.dtProj.Forward(t, dt))
	a := t.Unary(api.OpNeg, t.Unary(api.OpExp, l.aLog))
	t.Release(mark, z, xs, own, inject, delta, a, bm, cm)
	ys := t.MapPieces(pieces, []*nn.Var{xs, delta, bm, cm, inject}, func(pc api.Piece, in []*nn.Var) []*nn.Var {
		carry := st != nil && !pc.Pad
		y, hT, hs := t.SelectiveScan(nn.ScanVars{X: in[0], Delta: in[1], A: a, Bm: in[2], Cm: in[3], D: l.d, H0: start(pc, initSSM, stSSM), Inject: in[4]}, carry, targetH)
		if carry {
			m.b.SetSlice(st.ssm[i], hT.Value(), 0, pc.Row)
		}
		return []*nn.Var{y, hs}
	})
	y, hs := ys[0], ys[1]
	if targetH {
		own = hs
	}
	t.Release(mark, z, y, own)
	y = t.Mul(y, t.Unary(api.OpSilu, z))
	return l.outProj.Forward(t, y), own
}

// stateInjection returns DenseMamba target h's injection a ⊙ Σ_p h^(p)
// [B,T,E,N] for the gate input u [B,T,D] and the previous layers' own
// states prev (each [B,T,E,N]); the gate [B,T,E] is broadcast over N.
func stateInjection(t *nn.Tape, link *dense.Link, u *nn.Var, prev []*nn.Var) *nn.Var {
	sum := prev[0]
	for _, p := range prev[1:] {
		sum = t.Add(sum, p)
	}
	a := link.Gate(t, u)
	if a == nil {
		return sum
	}
	s := a.Shape()
	return t.Mul(t.Reshape(a, s[0], s[1], s[2], 1), sum)
}

// nearestFirst returns prev (nearest last) reversed.
func nearestFirst(prev []*nn.Var) []*nn.Var {
	out := make([]*nn.Var, len(prev))
	for i, p := range prev {
		out[len(prev)-1-i] = p
	}
	return out
}

// CheckpointAliases maps a parameter name to the names the original
// state-spaces checkpoints use (backbone.embedding.weight, singular).
func (m *Model) CheckpointAliases(name string) []string {
	if name == "backbone.embeddings.weight" {
		return []string{"backbone.embedding.weight"}
	}
	return nil
}

// RecognizesConfig reports whether configJSON is an original state-spaces
// Mamba config (d_model and n_layer, no model_type); only "mamba" claims it.
func (a architecture) RecognizesConfig(configJSON []byte) bool {
	if a.name != NameMamba {
		return false
	}
	var head map[string]json.RawMessage
	if json.Unmarshal(configJSON, &head) != nil {
		return false
	}
	_, dModel := head["d_model"]
	_, nLayer := head["n_layer"]
	_, typed := head["model_type"]
	return dModel && nLayer && !typed
}
