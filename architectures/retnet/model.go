// Package retnet implements RetNet as torchscale (0.3.0) computes it, and
// DenseRetNet, the gated retention unit (GAU) network of the official
// DenseSSM code with dense hidden connections (specs/models.md §2, §3, §5).
// Importing the package registers the architectures "retnet" and
// "denseretnet".
//
// A model computes retention in three forms that give the same logits up to
// the group norm's eps: Forward (the parallel form, a masked matmul over
// whole sequences), ForwardChunkwise and Prefill (parallel within chunks,
// recurrent across them; Prefill continues from and advances a State), and
// Step (the recurrent form, one token per sequence).
package retnet

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/tokens"
	"github.com/densessm/densessm/nn"
)

// PrefillChunk is the chunk size Prefill uses for the chunkwise form.
const PrefillChunk = 64

func init() {
	api.RegisterArchitecture(architecture{NameRetNet})
	api.RegisterArchitecture(architecture{NameDenseRetNet})
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

// RecognizesConfig claims configs whose model_type names no registered
// architecture: for "denseretnet" the official DenseSSM config (model_type
// "llama" or "DenseGauRetNet", with query_key_dim and v_factor), for
// "retnet" a torchscale RetNetConfig dump (decoder_retention_heads).
func (a architecture) RecognizesConfig(configJSON []byte) bool {
	var raw map[string]json.RawMessage
	if json.Unmarshal(configJSON, &raw) != nil {
		return false
	}
	if a.name == NameDenseRetNet {
		return isOfficialDense(raw)
	}
	_, heads := raw["decoder_retention_heads"]
	return heads
}

// Model is a RetNet or DenseRetNet language model. It implements
// api.Trainable.
type Model struct {
	cfg            *Config
	b              api.Backend
	params         *nn.Params
	nn.ModelParams // Backend, Parameters, Params, ReadParams, WriteParams, Grads, ZeroGrad
	embed          *nn.Embedding
	layers         []*layer
	norm           *nn.RMSNorm
	head           *nn.Var   // [V,d]; nil when tied to the embedding
	theta          []float32 // rotation angles [dk/2]
	gamma          []float32 // decay per head
	kScale         float32   // dk^-0.5
	embedScale     float32   // sqrt(d) or 1
}

var _ api.Trainable = (*Model)(nil)

// layer is one residual block. RetNet: x += MSR(norm(x)); x += FFN(ffnNorm(x)).
// DenseRetNet: x += GAU(norm(x)).
type layer struct {
	norm *nn.RMSNorm // retention_layer_norm or input_layernorm
	q, k *nn.Linear  // [Dqk,d]
	out  *nn.Linear  // out_proj or to_out.0 [d,Dv]

	// RetNet's multi-scale retention and SwiGLU FFN.
	v, g           *nn.Linear // [Dv,d]
	ffnNorm        *nn.RMSNorm
	fc1, gate, fc2 *nn.Linear

	// DenseRetNet's gated retention unit.
	toHidden     *nn.Linear // [2Dv,d]: v then g
	groupNorm    *nn.Var    // [dv], shared by the heads
	kLink, vLink *dense.Link
	kNorm, vNorm *nn.Var // the links' norm weights (nil for norm none), applied alone at m = 0
}

// New builds a model with freshly initialised parameters, seeded by seed:
// RetNet as torchscale initialises it (Xavier-uniform retention
// projections with gain 2^-2.5, out_proj gain 1, PyTorch's default for the
// FFN, N(0, d^-0.5) embedding and output projection), DenseRetNet as the
// official code does (every linear and embedding N(0, 0.02), the padding
// row zero, norm weights 1).
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
	if c.PadTokenID != nil {
		pad := *c.PadTokenID
		c.PadTokenID = &pad
	}
	m := &Model{cfg: &c, b: b, params: params, ModelParams: nn.NewModelParams(params), embedScale: 1}
	H, dk := c.NumAttentionHeads, c.KeyHeadDim()
	m.theta = nn.RotaryTheta(dk)
	for h := range H {
		m.gamma = append(m.gamma, float32(1-math.Exp2(float64(-5-h))))
	}
	m.kScale = float32(math.Pow(float64(dk), -0.5))
	if c.ScaleEmbedding {
		m.embedScale = float32(math.Sqrt(float64(c.HiddenSize)))
	}
	if c.gau() {
		m.newDenseRetNet()
	} else {
		m.newRetNet()
	}
	return m, nil
}

// xavier is nn.init.xavier_uniform_ for a [fanOut, fanIn] weight.
func xavier(fanIn, fanOut int, gain float64) nn.Init {
	a := gain * math.Sqrt(6/float64(fanIn+fanOut))
	return nn.Uniform(-a, a)
}

// newRetNet creates torchscale's parameters under "decoder.".
func (m *Model) newRetNet() {
	c := m.cfg
	d, dv, ffn := c.HiddenSize, c.ValueDim, c.FFNDim
	eps := float32(c.RMSNormEps)
	root := m.params.Scope()
	dec := root.Sub("decoder")
	std := math.Pow(float64(d), -0.5)
	m.embed = nn.NewEmbedding(dec.Sub("embed_tokens"), c.VocabSize, d, m.padZeroed(nn.Normal(std)))
	small := math.Pow(2, -2.5)
	for i := range c.NumHiddenLayers {
		s := dec.Sub("layers").Index(i)
		r := s.Sub("retention")
		f := s.Sub("ffn")
		m.layers = append(m.layers, &layer{
			norm:    nn.NewRMSNorm(s.Sub("retention_layer_norm"), d, eps),
			q:       nn.NewLinear(r.Sub("q_proj"), d, d, xavier(d, d, small), nil),
			k:       nn.NewLinear(r.Sub("k_proj"), d, d, xavier(d, d, small), nil),
			v:       nn.NewLinear(r.Sub("v_proj"), d, dv, xavier(d, dv, small), nil),
			g:       nn.NewLinear(r.Sub("g_proj"), d, dv, xavier(d, dv, small), nil),
			out:     nn.NewLinear(r.Sub("out_proj"), dv, d, xavier(dv, d, 1), nil),
			ffnNorm: nn.NewRMSNorm(s.Sub("final_layer_norm"), d, eps),
			fc1:     nn.NewLinear(f.Sub("fc1"), d, ffn, nn.FanInUniform(d), nil),
			gate:    nn.NewLinear(f.Sub("gate"), d, ffn, nn.FanInUniform(d), nil),
			fc2:     nn.NewLinear(f.Sub("fc2"), ffn, d, nn.FanInUniform(ffn), nil),
		})
	}
	m.norm = nn.NewRMSNorm(dec.Sub("layer_norm"), d, eps)
	if !c.TieWordEmbeddings {
		m.head = dec.Sub("output_projection").Matrix("weight", nn.Normal(std), c.VocabSize, d)
	}
}

// The checkpoint names of DenseRetNet's dense links, under
// "model.layers.{i}.self_attn.": the official code's selectors and norms,
// and names of ours for the ablation knobs it lacks.
var (
	keyLinkNames   = dense.Names{GateIn: "k_select.fc1", GateOut: "k_select.fc2", Proj: "k_dense_proj", Fuse: "k_dense_fuse", Norm: "k_norm"}
	valueLinkNames = dense.Names{GateIn: "v_select.fc1", GateOut: "v_select.fc2", Proj: "v_dense_proj", Fuse: "v_dense_fuse", Norm: "v_norm"}
)

// newDenseRetNet creates the official code's parameters under "model." and
// "lm_head". Every layer, the first included, has its links (the official
// checkpoints carry layer 0's unused selectors and norms).
func (m *Model) newDenseRetNet() {
	c := m.cfg
	d, dqk, e := c.HiddenSize, c.QueryKeyDim, c.ValueDim
	eps := float32(c.RMSNormEps)
	init := nn.Normal(0.02)
	root := m.params.Scope()
	mod := root.Sub("model")
	m.embed = nn.NewEmbedding(mod.Sub("embed_tokens"), c.VocabSize, d, m.padZeroed(init))
	kCfg, vCfg := c.linkConfigs()
	for i := range c.NumHiddenLayers {
		s := mod.Sub("layers").Index(i)
		a := s.Sub("self_attn")
		l := &layer{
			norm:      nn.NewRMSNorm(s.Sub("input_layernorm"), d, eps),
			q:         nn.NewLinear(a.Sub("q_proj"), d, dqk, init, nil),
			k:         nn.NewLinear(a.Sub("k_proj"), d, dqk, init, nil),
			toHidden:  nn.NewLinear(a.Sub("to_hidden").Index(0), d, 2*e, init, nil),
			out:       nn.NewLinear(a.Sub("to_out").Index(0), e, d, init, nil),
			groupNorm: a.Sub("group_norm").Param("weight", nn.Ones(), c.ValueHeadDim()),
			kLink:     dense.NewLink(a, kCfg, keyLinkNames, d, dqk, eps, 0.02),
			vLink:     dense.NewLink(a, vCfg, valueLinkNames, d, e, eps, 0.02),
		}
		if c.Dense.Norm == dense.NormRMS {
			l.kNorm, _ = m.params.Lookup(a.Sub(keyLinkNames.Norm).Name("weight"))
			l.vNorm, _ = m.params.Lookup(a.Sub(valueLinkNames.Norm).Name("weight"))
		}
		m.layers = append(m.layers, l)
	}
	m.norm = nn.NewRMSNorm(mod.Sub("norm"), d, eps)
	if !c.TieWordEmbeddings {
		m.head = root.Sub("lm_head").Matrix("weight", init, c.VocabSize, d)
	}
}

// padZeroed wraps the embedding's init so that the padding row starts at
// zero, as nn.Embedding's padding_idx does.
func (m *Model) padZeroed(init nn.Init) nn.Init {
	if m.cfg.PadTokenID == nil {
		return init
	}
	pad := *m.cfg.PadTokenID
	return func(dst []float32, shape api.Shape, r *rand.Rand) {
		init(dst, shape, r)
		clear(dst[pad*shape[1] : (pad+1)*shape[1]])
	}
}

// Config returns the model's configuration.
func (m *Model) Config() api.Config { return m.cfg }

// CheckpointAliases lets torchscale checkpoints load without the "decoder."
// prefix, as a RetNetDecoder's own state_dict names its tensors.
func (m *Model) CheckpointAliases(name string) []string {
	if rest, ok := strings.CutPrefix(name, "decoder."); ok {
		return []string{rest}
	}
	return nil
}

// pass says how run computes retention: in which form, with which chunk
// size, and (chunkwise only) from which State.
type pass struct {
	form  api.RetentionForm
	chunk int
	st    *State
	out   api.Tensor // the logits' destination, when the caller gave one
	last  bool       // only the last position's logits [B,1,V]
	// pieces of a variable-length or packed batch (api.Layout.Pieces),
	// over which retention runs apart; one piece of everything otherwise
	pieces []api.Piece
	// init, when set, is a learnable initial state (state tuning): per
	// layer the retention state [1,H,dk,dv] at position initPos, which
	// every piece starts from (the chunkwise form carries its gradient).
	init    []*nn.Var
	initPos int
}

// Info reports the model's capabilities: every mode, trainable, in
// process.
func (m *Model) Info() api.Info {
	return api.Info{Arch: m.cfg.ModelType, Backend: m.b.Name(), Threads: m.b.Threads(),
		Modes:     []api.Mode{api.Parallel, api.Chunkwise, api.Recurrent},
		Trainable: m.params.Weights() == api.F32, Local: true, Weights: m.params.Weights(), Snapshots: true, Packed: true}
}

// Close does nothing: the parameters are Go memory.
func (m *Model) Close() error { return nil }

// Forward returns the logits [B,T,V] of whole sequences in form f: the
// parallel form (memory quadratic in T), the chunkwise form with blocks of
// f.Chunk tokens (PrefillChunk when 0), or the recurrent form. Sequences
// may have different lengths (api.Layout): the parallel and chunkwise
// forms run them padded, the retention (and rotation) of each sequence
// apart; the recurrent form runs each length as its own batch.
func (m *Model) Forward(ctx context.Context, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	switch f.Mode {
	case api.Chunkwise:
		return m.ForwardChunkwise(ctx, ids, chunkOf(f))
	case api.Recurrent:
		if api.Ragged(ids) {
			return api.ForwardEach(ctx, m, ids, f)
		}
		return api.ForwardWith(ctx, m, ids, f)
	}
	return m.infer(ctx, ids, pass{form: api.RetentionParallel})
}

// ForwardInto implements api.ForwardIntoModel: the parallel form's logits
// written into dst [B,T,V].
func (m *Model) ForwardInto(ctx context.Context, dst api.Tensor, ids [][]int32) (err error) {
	defer api.Recover(&err)
	_, err = m.infer(ctx, ids, pass{form: api.RetentionParallel, out: dst})
	return err
}

// chunkOf returns the chunk size of a chunkwise form.
func chunkOf(f api.Form) int {
	if f.Chunk == 0 {
		return PrefillChunk
	}
	return f.Chunk
}

// ForwardChunkwise returns the logits [B,T,V] of the chunkwise form with
// chunks of chunk tokens (the last may be shorter), starting from an empty
// state.
func (m *Model) ForwardChunkwise(ctx context.Context, ids [][]int32, chunk int) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if chunk < 1 {
		return nil, fmt.Errorf("retnet: chunk size %d: %w", chunk, api.ErrOutOfRange)
	}
	return m.infer(ctx, ids, pass{form: api.RetentionChunkwise, chunk: chunk})
}

// Prefill runs ids through form f from s, leaves s ready for Step, and
// returns the logits [B,T,V]. The parallel form continued from a state is
// the chunkwise form with the whole sequence as one chunk. s changes only
// when the whole prefill succeeds.
func (m *Model) Prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	switch f.Mode {
	case api.Chunkwise:
		return m.PrefillChunkwise(ctx, s, ids, chunkOf(f))
	case api.Recurrent:
		if _, err := m.ownState(s, len(ids)); err != nil {
			return nil, err
		}
		return api.RunRecurrent(ctx, m, s, ids)
	}
	T := 1
	for _, seq := range ids {
		T = max(T, len(seq))
	}
	return m.PrefillChunkwise(ctx, s, ids, T)
}

// PrefillChunkwise is Prefill with chunks of chunk tokens: the chunkwise
// form continued from s. Feeding a sequence a window at a time through
// PrefillChunkwise, each window a multiple of chunk tokens, computes what
// ForwardChunkwise computes over the whole sequence, in memory that grows
// with the window instead of the sequence.
func (m *Model) PrefillChunkwise(ctx context.Context, s api.State, ids [][]int32, chunk int) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if chunk < 1 {
		return nil, fmt.Errorf("retnet: chunk size %d: %w", chunk, api.ErrOutOfRange)
	}
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	return m.infer(ctx, ids, pass{form: api.RetentionChunkwise, chunk: chunk, st: st})
}

// infer runs p on an inference tape and, when p carries a State, commits
// the layers' final retention states and advances its position. Every
// intermediate tensor is freed by the time it returns (nn.Tape.Release):
// only the logits stay. ids may have different lengths: they run padded,
// each sequence apart, continuing its own state at its own position, and
// the logits past each sequence's end are zero.
func (m *Model) infer(ctx context.Context, ids [][]int32, p pass) (api.Tensor, error) {
	lay, err := api.LayoutOf(ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	tok, flat, err := tokens.Batch(m.b, lay.Padded(ids, 0), m.cfg.VocabSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	p.pieces = nn.PiecesOf(tok.Shape(), lay)
	if _, same := p.st.uniform(); !same {
		p.pieces = lay.RowPieces() // each row rotates from its own position
	}
	t := nn.NewInferenceTape(m.b)
	mark := t.Mark()
	out, states, err := m.run(ctx, t, tok, flat, p)
	if err != nil {
		t.Release(mark)
		return nil, err
	}
	if p.st != nil {
		for i, s := range states {
			m.b.Copy(p.st.s[i], s.Value())
		}
		p.st.lens.Add(ids)
	}
	t.Release(mark, out)
	if p.out != nil {
		return nn.MaskPadding(m.b, p.out, lay), nil
	}
	return nn.MaskPadding(m.b, out.Value(), lay), nil
}

// PrefillLast is Prefill returning only the logits of the last position
// of each sequence, [B,V] (what a decoder samples from): the final norm and
// the output projection run on that row alone, so a long prompt costs
// neither [B,T,V] logits nor the products that make them, and each layer's
// intermediates are freed when the layer is done. The memory of the
// chunkwise form still grows with the sequence (the activations between
// layers, [B,T,d]); feed a long prompt a window at a time (see
// PrefillChunkwise) to bound it by the window.
func (m *Model) PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (_ api.Tensor, err error) {
	defer api.Recover(&err)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	st, err := m.ownState(s, len(ids))
	if err != nil {
		return nil, err
	}
	T := len(ids[0])
	if T == 0 {
		return nil, fmt.Errorf("%s: prefill of no tokens has no last logits: %w", m.cfg.ModelType, api.ErrShape)
	}
	if api.Ragged(ids) {
		return nil, fmt.Errorf("%s: last logits of sequences of different lengths: %w", m.cfg.ModelType, api.ErrShape)
	}
	chunk := T
	switch f.Mode {
	case api.Recurrent:
		return nn.StepLast(ctx, m, s, ids)
	case api.Chunkwise:
		chunk = chunkOf(f)
	}
	out, err := m.infer(ctx, ids, pass{form: api.RetentionChunkwise, chunk: chunk, st: st, last: true})
	if err != nil {
		return nil, err
	}
	return m.b.Reshape(out, len(ids), m.cfg.VocabSize), nil
}

// LossAndGrad runs the parallel form on batch, returns the mean
// cross-entropy over targets that are not api.IgnoreIndex, and adds its
// gradient to every parameter's. There is no dropout.
func (m *Model) LossAndGrad(ctx context.Context, batch api.Batch) (_ float64, err error) {
	defer api.Recover(&err)
	if err := nn.CheckTrainable(m.params); err != nil {
		return 0, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	in, err := tokens.Upload(m.b, batch, m.cfg.VocabSize)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", m.cfg.ModelType, err)
	}
	t := nn.NewTape(m.b)
	mark := t.Mark()
	logits, _, err := m.run(ctx, t, in.Inputs, in.Flat, pass{form: api.RetentionParallel, pieces: nn.PiecesOf(in.Inputs.Shape(), in.Layout)})
	if err != nil {
		return 0, err
	}
	loss := t.CrossEntropy(logits, in.Targets)
	value := api.Float32s(loss.Value())[0]
	t.Backward(loss)
	t.Release(mark) // the step's activations, for the next step to reuse
	return float64(value), nil
}

// run computes the logits [B,T,V] for ids [B,T] (flat: the same ids as a
// slice) on tape t in p's form (into p.out, returning nil, when it is set). With p.st it starts from the State's
// retention states and position and returns each layer's final state,
// without changing the State. With p.last the logits are the last
// position's alone, [B,1,V]. It frees each layer's intermediates once the
// layer is done, keeping the residual stream, the final states and what
// DenseRetNet's later layers read (on a recording tape nothing is freed);
// the caller releases what remains.
func (m *Model) run(ctx context.Context, t *nn.Tape, ids api.Tensor, flat []int32, p pass) (*nn.Var, []*nn.Var, error) {
	c := m.cfg
	mark := t.Mark()
	h := m.embedTokens(t, ids, flat)
	if m.embedScale != 1 {
		h = t.Scale(h, m.embedScale)
	}
	var states []*nn.Var
	var prevK, prevV []*nn.Var // DenseRetNet: the previous layers' raw k and v, nearest last
	for i, l := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		u := l.norm.Forward(t, h)
		var y, sT, kRaw, vRaw *nn.Var
		if c.gau() {
			y, sT, kRaw, vRaw = m.gauBlock(t, i, l, u, prevK, prevV, p)
			if c.Dense.M > 0 {
				prevK, prevV = keepLast(prevK, kRaw, c.Dense.M), keepLast(prevV, vRaw, c.Dense.M)
			}
			h = t.Add(h, y)
		} else {
			y, sT = m.msrBlock(t, i, l, u, p)
			h = t.Add(h, y)
			h = t.Add(h, m.ffn(t, l, l.ffnNorm.Forward(t, h)))
		}
		states = append(states, sT)
		live := append(append([]*nn.Var{h}, prevK...), prevV...)
		t.Release(mark, append(live, states...)...)
	}
	if p.last {
		h = t.Slice(h, 1, h.Shape()[1]-1, 1)
	}
	h = m.norm.Forward(t, h)
	head := m.head
	if head == nil {
		head = m.embed.Weight
	}
	if p.out != nil {
		nn.LinearInto(m.b, p.out, h.Value(), head.Value())
		return nil, states, nil
	}
	return t.Linear(h, head, nil), states, nil
}

// keepLast appends v to list and keeps the last n entries.
func keepLast(list []*nn.Var, v *nn.Var, n int) []*nn.Var {
	list = append(list, v)
	if len(list) > n {
		list = list[1:]
	}
	return list
}

// embedTokens looks up the embeddings [B,T,d] of ids. With a padding token
// present in flat, its rows are taken from the table through a path that
// carries no gradient, so that the padding row learns nothing (PyTorch's
// padding_idx) even when the table is also the tied output projection.
func (m *Model) embedTokens(t *nn.Tape, ids api.Tensor, flat []int32) *nn.Var {
	h := m.embed.Forward(t, ids)
	if m.cfg.PadTokenID == nil || !t.Recording() {
		return h
	}
	pad := int32(*m.cfg.PadTokenID)
	keep := make([]float32, len(flat))
	found := false
	for i, id := range flat {
		if id == pad {
			found = true
		} else {
			keep[i] = 1
		}
	}
	if !found {
		return h
	}
	s := ids.Shape()
	drop := make([]float32, len(keep))
	for i, k := range keep {
		drop[i] = 1 - k
	}
	keepV := nn.NewVar(api.FromFloat32s(m.b, keep, s[0], s[1], 1), false)
	dropV := nn.NewVar(api.FromFloat32s(m.b, drop, s[0], s[1], 1), false)
	frozen := t.Embedding(nn.NewVar(m.embed.Weight.Value(), false), ids)
	return t.Add(t.Mul(h, keepV), t.Mul(frozen, dropV))
}

// msrBlock is RetNet's multi-scale retention on u [B,T,d] (already normed):
// out_proj(swish(g) * GN(retention(rot(q), rot(k dk^-0.5), v))). It returns
// the output [B,T,d] and, with p.st, the final retention state.
func (m *Model) msrBlock(t *nn.Tape, i int, l *layer, u *nn.Var, p pass) (out, sT *nn.Var) {
	q := l.q.Forward(t, u)
	k := t.Scale(l.k.Forward(t, u), m.kScale)
	v := l.v.Forward(t, u)
	g := t.Unary(api.OpSilu, l.g.Forward(t, u))
	o, sT := m.retain(t, i, q, k, v, nil, p)
	return l.out.Forward(t, t.Mul(g, o)), sT
}

// ffn is RetNet's SwiGLU feed-forward network: fc2(swish(fc1 x) * gate x).
func (m *Model) ffn(t *nn.Tape, l *layer, x *nn.Var) *nn.Var {
	a := t.Unary(api.OpSilu, l.fc1.Forward(t, x))
	return l.fc2.Forward(t, t.Mul(a, l.gate.Forward(t, x)))
}

// gauBlock is DenseRetNet's gated retention unit on u [B,T,d] (already
// normed), given the raw k [B,T,Dqk] and v [B,T,Dv] of up to m previous
// layers (nearest last). It returns the output [B,T,d], the final
// retention state (with p.st), and this layer's raw k and v (before fusion
// and rotation) for the layers after it.
func (m *Model) gauBlock(t *nn.Tape, i int, l *layer, u *nn.Var, prevK, prevV []*nn.Var, p pass) (out, sT, kRaw, vRaw *nn.Var) {
	e := m.cfg.ValueDim
	q := t.Unary(api.OpSilu, l.q.Forward(t, u))
	kRaw = t.Scale(t.Unary(api.OpSilu, l.k.Forward(t, u)), m.kScale)
	hv := t.Unary(api.OpSilu, l.toHidden.Forward(t, u))
	vRaw = t.Slice(hv, -1, 0, e)
	g := t.Slice(hv, -1, e, e)
	k, v := kRaw, vRaw
	if i > 0 {
		k = m.fuse(t, l.kLink, l.kNorm, u, kRaw, prevK)
		v = m.fuse(t, l.vLink, l.vNorm, u, vRaw, prevV)
	}
	o, sT := m.retain(t, i, q, k, v, l.groupNorm, p)
	return l.out.Forward(t, t.Mul(o, g)), sT, kRaw, vRaw
}

// fuse applies a dense link at a layer after the first: the previous
// layers' raw tensors (nearest last) are gated and added, then normed. With
// none (m = 0) only the norm applies, as the official code normalises k and
// v after its (empty) fusion loop.
func (m *Model) fuse(t *nn.Tape, link *dense.Link, norm *nn.Var, u, x *nn.Var, prev []*nn.Var) *nn.Var {
	if len(prev) == 0 {
		if norm == nil {
			return x
		}
		return t.RMSNorm(x, norm, float32(m.cfg.RMSNormEps))
	}
	return link.Fuse(t, x, nearestFirst(prev), link.Gate(t, u))
}

// nearestFirst returns prev (nearest last) reversed.
func nearestFirst(prev []*nn.Var) []*nn.Var {
	out := make([]*nn.Var, len(prev))
	for i, p := range prev {
		out[len(prev)-1-i] = p
	}
	return out
}

// retain runs layer i's retention on q, k [B,T,Dqk] (k scaled, not rotated)
// and v [B,T,Dv]: it splits the heads, rotates q and k by position, applies
// retention in p's form, RMS-normalises each head's output over dv with
// weight gn (nil for none), and returns it as [B,T,Dv], with the final
// retention state when p carries a State.
//
// Over the pieces of a variable-length or packed batch (p.pieces) it runs
// apart, each piece rotated from position 0 and retained from an empty
// state, from p.init at p.initPos, or from its rows of p.st at their
// position (pieces of padding from an empty state).
func (m *Model) retain(t *nn.Tape, i int, q, k, v, gn *nn.Var, p pass) (o, sT *nn.Var) {
	c := m.cfg
	H, dk, dv := c.NumAttentionHeads, c.KeyHeadDim(), c.ValueHeadDim()
	if p.pieces == nil {
		p.pieces = []api.Piece{{Rows: q.Shape()[0], Len: q.Shape()[1]}}
	}
	var states []*nn.Var // the final states of the pieces that carry one, in row order
	o = t.MapPieces(p.pieces, []*nn.Var{q, k, v}, func(pc api.Piece, x []*nn.Var) []*nn.Var {
		s := x[0].Shape()
		B, T := s[0], s[1]
		heads := func(x *nn.Var, w int) *nn.Var { return t.Permute(t.Reshape(x, B, T, H, w), 0, 2, 1, 3) }
		in := nn.RetentionVars{Gamma: m.gamma, Chunk: p.chunk}
		carry := p.st != nil && !pc.Pad
		switch {
		case carry:
			in.S0 = nn.NewVar(p.st.s[i], false)
			if B != p.st.batch {
				in.S0 = t.Slice(in.S0, 0, pc.Row, B)
			}
			in.Offset = p.st.lens[pc.Row]
		case p.init != nil:
			in.S0 = t.Broadcast(p.init[i], B)
			in.Offset = p.initPos
		}
		in.Q = t.Rotary(heads(x[0], dk), m.theta, in.Offset)
		in.K = t.Rotary(heads(x[1], dk), m.theta, in.Offset)
		in.V = heads(x[2], dv)
		y, s0 := t.Retention(p.form, in, carry)
		if carry {
			states = append(states, s0)
		}
		y = t.RMSNorm(t.Permute(y, 0, 2, 1, 3), gn, float32(c.RMSNormEps)) // [B,T,H,dv]
		return []*nn.Var{t.Reshape(y, B, T, H*dv)}
	})[0]
	switch len(states) {
	case 0:
	case 1:
		sT = states[0]
	default:
		sT = t.Concat(0, states...)
	}
	return o, sT
}
