package hgrn

import (
	"context"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

func init() {
	api.RegisterArchitecture(architecture{})
}

// architecture is the api.Architecture registered under Name.
type architecture struct{}

func (architecture) Name() string              { return Name }
func (architecture) DefaultConfig() api.Config { return DefaultConfig() }
func (architecture) ParseConfig(data []byte) (api.Config, error) {
	return ParseConfig(data)
}

func (architecture) New(ctx context.Context, cfg api.Config, opts api.BuildOptions) (api.Model, error) {
	c, ok := cfg.(*Config)
	if !ok || c == nil {
		return nil, fmt.Errorf("hgrn: config %T: %w", cfg, api.ErrConfig)
	}
	b, err := opts.OpenBackend()
	if err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	if opts.Zeros {
		return build(c, nn.NewUninitializedParams(b))
	}
	return build(c, nn.NewParams(b, opts.Seed).WithContext(ctx))
}

// Model is an HGRN language model (see the package documentation for the
// maths). It implements api.Trainable.
type Model struct {
	cfg            *Config
	b              api.Backend
	params         *nn.Params
	nn.ModelParams // Backend, Parameters, Params, ReadParams, WriteParams, Grads, ZeroGrad
	embed          *nn.Embedding
	layers         []*layer
	norm           *nn.RMSNorm
	lmHead         *nn.Var // [V, D]; nil when tied to the embedding
}

var _ api.Trainable = (*Model)(nil)

// layer is one block: the gated recurrence (token mixer) and the SwiGLU
// MLP, each a pre-norm residual.
type layer struct {
	lb                  float32 // λ_l, the forget gate's lower bound
	attnNorm            *nn.RMSNorm
	fProj, iProj, gProj *nn.Linear   // [D, D]
	sel                 []*nn.Linear // sel[j-1] = W^{l,j}_sel [D, D], j = 1 .. min(l, m)
	gNorm               *nn.RMSNorm  // the norm of the fused state
	oProj               *nn.Linear   // [D, D]
	mlpNorm             *nn.RMSNorm  // before the MLP
	gate, up            *nn.Linear   // [I, D]
	down                *nn.Linear   // [D, I]
}

// New builds a model of cfg on b with parameters drawn as the package
// documentation says, seeded by seed.
func New(cfg *Config, b api.Backend, seed int64) (*Model, error) {
	return build(cfg, nn.NewParams(b, seed))
}

// build builds the model cfg describes with its parameters in params
// (initialised or not: see nn.NewUninitializedParams).
func build(cfg *Config, params *nn.Params) (_ *Model, err error) {
	defer api.Recover(&err)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := *cfg
	m := &Model{cfg: &c, b: params.Backend(), params: params, ModelParams: nn.NewModelParams(params)}
	D, I, L := c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers
	eps := float32(c.RMSNormEps)
	proj := nn.FanInUniform(D)
	resid := 1 / math.Sqrt(float64(L))
	root := params.Scope()
	model := root.Sub("model")
	m.embed = nn.NewEmbedding(model.Sub("embed_tokens"), c.VocabSize, D, nn.Normal(0.02))
	for l := range L {
		s := model.Sub("layers").Index(l)
		attn := s.Sub("attn")
		mlp := s.Sub("mlp")
		ly := &layer{
			lb:       float32(c.LowerBound(l)),
			attnNorm: nn.NewRMSNorm(s.Sub("attn_norm"), D, eps),
			fProj:    nn.NewLinear(attn.Sub("f_proj"), D, D, proj, nil),
			iProj:    nn.NewLinear(attn.Sub("i_proj"), D, D, proj, nil),
			gProj:    nn.NewLinear(attn.Sub("g_proj"), D, D, proj, nil),
		}
		for j := 1; j <= min(l, c.DenseM); j++ {
			ly.sel = append(ly.sel, nn.NewLinear(attn.Sub("dense_sel").Index(j), D, D, proj, nil))
		}
		ly.gNorm = nn.NewRMSNorm(attn.Sub("g_norm"), D, eps)
		ly.oProj = nn.NewLinear(attn.Sub("o_proj"), D, D, nn.Scaled(proj, resid), nil)
		ly.mlpNorm = nn.NewRMSNorm(s.Sub("mlp_norm"), D, eps)
		ly.gate = nn.NewLinear(mlp.Sub("gate_proj"), D, I, proj, nil)
		ly.up = nn.NewLinear(mlp.Sub("up_proj"), D, I, proj, nil)
		ly.down = nn.NewLinear(mlp.Sub("down_proj"), I, D, nn.Scaled(nn.FanInUniform(I), resid), nil)
		m.layers = append(m.layers, ly)
	}
	m.norm = nn.NewRMSNorm(model.Sub("norm"), D, eps)
	if !c.TieWordEmbeddings {
		m.lmHead = root.Param("lm_head.weight", nn.Normal(0.02), c.VocabSize, D)
	}
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() api.Config { return m.cfg }

// Info reports the model's capabilities: the parallel, chunkwise and
// recurrent forms, trainable, in process.
func (m *Model) Info() api.Info {
	return api.Info{Arch: Name, Backend: m.b.Name(), Threads: m.b.Threads(),
		Modes: []api.Mode{api.Parallel, api.Chunkwise, api.Recurrent}, Trainable: true, Local: true, Snapshots: true}
}

// Close does nothing: the parameters are Go memory.
func (m *Model) Close() error { return nil }

// Forward returns the logits [B,T,V] of whole sequences in form f, from an
// empty state. The chunkwise form runs the parallel form a block of
// f.Chunk tokens at a time (the whole sequence when f.Chunk is 0),
// carrying the recurrent state; the recurrent form runs Step per token.
func (m *Model) Forward(ctx context.Context, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	if f.Mode != api.Parallel {
		return api.ForwardWith(ctx, m, ids, f)
	}
	tok, _, err := tokens.Batch(m.b, ids, m.cfg.VocabSize)
	if err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	out, err := m.run(ctx, nn.NewInferenceTape(m.b), tok, nil)
	if err != nil {
		return nil, err
	}
	return out.Value(), nil
}

// Prefill runs ids through form f continuing from s (see Forward), leaves
// s ready for Step, and returns the logits [B,T,V].
func (m *Model) Prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	return api.PrefillForms(ctx, m, s, ids, f, func(ctx context.Context, ids [][]int32) (api.Tensor, error) {
		return m.prefill(ctx, st, ids)
	})
}

// prefill is the parallel form continued from st, which it advances.
func (m *Model) prefill(ctx context.Context, st *State, ids [][]int32) (api.Tensor, error) {
	tok, _, err := tokens.Batch(m.b, ids, m.cfg.VocabSize)
	if err != nil {
		return nil, fmt.Errorf("hgrn: %w", err)
	}
	out, err := m.run(ctx, nn.NewInferenceTape(m.b), tok, st)
	if err != nil {
		return nil, err
	}
	st.pos += tok.Shape()[1]
	return out.Value(), nil
}

// LossAndGrad runs the parallel form on batch, returns the mean
// cross-entropy over the targets that are not api.IgnoreIndex, and adds
// its gradient to every parameter's.
func (m *Model) LossAndGrad(ctx context.Context, batch api.Batch) (_ float64, err error) {
	defer api.Recover(&err)
	tok, _, err := tokens.Batch(m.b, batch.Inputs, m.cfg.VocabSize)
	if err != nil {
		return 0, fmt.Errorf("hgrn: %w", err)
	}
	targets, err := tokens.Targets(m.b, batch, tok.Shape())
	if err != nil {
		return 0, fmt.Errorf("hgrn: %w", err)
	}
	t := nn.NewTape(m.b)
	logits, err := m.run(ctx, t, tok, nil)
	if err != nil {
		return 0, err
	}
	loss := t.CrossEntropy(logits, targets)
	value := api.Float32s(loss.Value())[0]
	t.Backward(loss)
	return float64(value), nil
}

// run computes the logits [B,T,V] of the I32 ids [B,T] on tape t in the
// parallel form, continuing from and advancing st when it is not nil.
func (m *Model) run(ctx context.Context, t *nn.Tape, ids api.Tensor, st *State) (*nn.Var, error) {
	B, T := ids.Shape()[0], ids.Shape()[1]
	D := m.cfg.HiddenSize
	h := m.embed.Forward(t, ids) // [B,T,D]
	var below []*nn.Var          // the own states s of the layers below, nearest last
	for l, ly := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u := ly.attnNorm.Forward(t, h)
		sig := t.Unary(api.OpSigmoid, ly.fProj.Forward(t, u))
		f := t.Affine(sig, 1-ly.lb, ly.lb)                // λ + (1-λ)σ
		write := t.Affine(sig, -(1 - ly.lb), 1-ly.lb)     // 1 - f = (1-λ)(1-σ)
		in := t.Unary(api.OpSilu, ly.iProj.Forward(t, u)) // i
		a := t.Mul(write, in)
		var s0 *nn.Var
		if st != nil {
			s0 = nn.NewVar(m.b.Reshape(st.s[l], B, 1, D), false)
		}
		s := scan(t, f, a, s0) // [B,T,D]
		if st != nil && T > 0 {
			m.b.Copy(st.s[l], t.Slice(s, 1, T-1, 1).Value())
		}
		fused := s
		for j, sel := range ly.sel { // j+1 layers below
			p := below[len(below)-1-j]
			fused = t.Add(fused, t.Mul(t.Unary(api.OpSigmoid, sel.Forward(t, p)), p))
		}
		if m.cfg.DenseM > 0 {
			below = append(below, s)
			if len(below) > m.cfg.DenseM {
				below = below[1:]
			}
		}
		o := t.Mul(ly.gNorm.Forward(t, fused), t.Unary(api.OpSilu, ly.gProj.Forward(t, u)))
		h = t.Add(h, ly.oProj.Forward(t, o))
		x := ly.mlpNorm.Forward(t, h)
		h = t.Add(h, ly.down.Forward(t, t.Mul(t.Unary(api.OpSilu, ly.gate.Forward(t, x)), ly.up.Forward(t, x))))
	}
	h = m.norm.Forward(t, h)
	head := m.lmHead
	if head == nil {
		head = m.embed.Weight
	}
	return t.Linear(h, head, nil), nil
}

// scan returns s [B,T,D] with s_t = f_t ⊙ s_{t-1} + a_t for f, a [B,T,D]
// and s_{-1} = s0 [B,1,D] (zeros when s0 is nil), as a Hillis–Steele
// doubling scan: after the level of offset k, position t holds the
// composition of the pairs (f, a) of positions max(0, t-2k+1) .. t, the
// positions before 0 padded with the identity pair (1, 0). Every level is
// a few whole-sequence element-wise ops, so the tape records O(log T) ops
// and the backward pass costs O(B·T·D·log T).
func scan(t *nn.Tape, f, a, s0 *nn.Var) *nn.Var {
	shape := f.Shape()
	B, T, D := shape[0], shape[1], shape[2]
	b := t.Backend()
	for k := 1; k < T; k *= 2 {
		last := 2*k >= T
		zeros := nn.NewVar(b.Alloc(api.F32, B, k, D), false)
		aShift := t.Concat(1, zeros, t.Slice(a, 1, 0, T-k)) // a_{t-k}, 0 before k
		next := t.Add(a, t.Mul(f, aShift))
		if !last || s0 != nil {
			ones := b.Alloc(api.F32, B, k, D)
			b.Fill(ones, 1)
			fShift := t.Concat(1, nn.NewVar(ones, false), t.Slice(f, 1, 0, T-k)) // f_{t-k}, 1 before k
			f = t.Mul(f, fShift)
		}
		a = next
	}
	if s0 != nil {
		a = t.Add(a, t.Mul(f, s0))
	}
	return a
}
