package nn

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"

	"github.com/densessm/densessm/api"
)

// Params is an ordered collection of named parameters: leaf Vars that
// require a gradient, in creation order, named as the checkpoint names them
// ("backbone.layers.0.mixer.in_proj.weight"). It is not safe for concurrent
// use.
type Params struct {
	ctx     context.Context
	b       api.Backend
	seed    int64
	uninit  bool      // parameters are allocated (zero) and their Init is not run
	weights api.DType // the storage of Matrix parameters; F32 when Invalid
	names   []string
	vars    []*Var
	index   map[string]int
	gen     uint64 // see Generation
}

// NewParams returns an empty collection whose parameters live on b and are
// initialised from seed.
func NewParams(b api.Backend, seed int64) *Params {
	return &Params{ctx: context.Background(), b: b, seed: seed, index: map[string]int{}}
}

// WithContext makes the creation of every later parameter check ctx: a
// cancelled context panics with its error (which api.Recover returns), so
// that building a large model can be interrupted. It returns p.
func (p *Params) WithContext(ctx context.Context) *Params {
	p.ctx = ctx
	return p
}

// WithWeights makes the weight matrices created later (Scope.Matrix: the
// weights of Linear layers, embeddings and output heads) be stored in d
// (F32, BF16 or Q8_0) where their shape allows it: Q8_0 needs a number of
// columns that is a multiple of api.Q8Block, and a matrix that does not
// have it stays F32. Low-precision weights serve inference only: the
// tape's gradients need F32. It returns p.
func (p *Params) WithWeights(d api.DType) *Params {
	p.weights = d
	return p
}

// NewUninitializedParams returns an empty collection whose parameters live
// on b and are allocated as zeros, their initialisers not run: for a model
// whose every parameter is about to be loaded from a checkpoint, where
// drawing hundreds of millions of random values would be wasted.
func NewUninitializedParams(b api.Backend) *Params {
	return &Params{ctx: context.Background(), b: b, uninit: true, index: map[string]int{}}
}

// Backend returns the backend the parameters live on.
func (p *Params) Backend() api.Backend { return p.b }

// Generation counts the changes to the parameters' values the collection
// knows of: ModelParams.WriteParams, and Changed. Values derived from the
// parameters and kept between calls (Mamba's decode step keeps A =
// -exp(A_log)) are computed again when it moves.
func (p *Params) Generation() uint64 { return p.gen }

// Changed tells the collection that its values are about to change or
// have changed: a model's training step calls it, as the optimizer then
// updates the parameters in place.
func (p *Params) Changed() { p.gen++ }

// Scope returns the root scope: names built from it have no prefix.
func (p *Params) Scope() Scope { return Scope{p: p} }

// Len returns the number of parameters.
func (p *Params) Len() int { return len(p.vars) }

// Lookup returns the parameter with the given full name.
func (p *Params) Lookup(name string) (*Var, bool) {
	i, ok := p.index[name]
	if !ok {
		return nil, false
	}
	return p.vars[i], true
}

// Names returns the parameter names in creation order.
func (p *Params) Names() []string { return append([]string(nil), p.names...) }

// Vars returns the parameters in creation order.
func (p *Params) Vars() []*Var { return append([]*Var(nil), p.vars...) }

// Parameters returns every parameter's name and value tensor in creation
// order. The tensors are the parameters' own: writing into them changes the
// model (this is how checkpoints are loaded).
func (p *Params) Parameters() []api.Parameter {
	out := make([]api.Parameter, len(p.vars))
	for i, v := range p.vars {
		out[i] = api.Parameter{Name: p.names[i], Value: v.value}
	}
	return out
}

// Grads returns every parameter's accumulated gradient with its name, in
// creation order. A parameter that has received no gradient yet gets a zero
// gradient here, so every entry holds a tensor.
func (p *Params) Grads() []api.Parameter {
	out := make([]api.Parameter, len(p.vars))
	for i, v := range p.vars {
		if v.grad == nil {
			v.grad = p.b.Alloc(api.F32, v.Shape()...)
			v.gradZero = true
		}
		out[i] = api.Parameter{Name: p.names[i], Value: v.grad}
	}
	return out
}

// Freeze turns gradient computation off for every parameter and returns
// the function that turns it back on where it was: a pass that learns
// something other than the weights (an initial state) computes no weight
// gradients and leaves the accumulated ones as they are.
func (p *Params) Freeze() (thaw func()) {
	was := make([]bool, len(p.vars))
	for i, v := range p.vars {
		was[i] = v.requiresGrad
		v.requiresGrad = false
	}
	return func() {
		for i, v := range p.vars {
			v.requiresGrad = was[i]
		}
	}
}

// ZeroGrad sets every parameter's gradient to zero.
func (p *Params) ZeroGrad() {
	for _, v := range p.vars {
		v.ZeroGrad()
	}
}

// Weights returns the storage WithWeights set: F32 when not set.
func (p *Params) Weights() api.DType {
	if p.weights == api.Invalid {
		return api.F32
	}
	return p.weights
}

// CheckTrainable returns an error wrapping api.ErrUnsupported when p's
// weights are not F32: the gradients of low-precision weights are not
// computed.
func CheckTrainable(p *Params) error {
	if w := p.Weights(); w != api.F32 {
		return fmt.Errorf("the weights are %s: training needs F32 weights (load the model without low-precision weights): %w", api.WeightName(w), api.ErrUnsupported)
	}
	return nil
}

// WeightDType returns the dtype of a weight matrix of cols columns created
// by Scope.Matrix (see WithWeights).
func (p *Params) WeightDType(cols int) api.DType {
	switch d := p.weights; {
	case d == api.BF16, d == api.Q8_0 && cols%api.Q8Block == 0:
		return d
	}
	return api.F32
}

// add registers a new parameter under name, initialised by init from a
// generator seeded with the collection's seed and name (or zero, for an
// uninitialised collection), stored as dtype (initialised in F32 and
// converted).
func (p *Params) add(name string, init Init, shape []int, dtype api.DType) *Var {
	if _, dup := p.index[name]; dup {
		api.Panicf(api.ErrInternal, "nn: parameter %q created twice", name)
	}
	if err := api.Shape(shape).Validate(); err != nil {
		panic(err)
	}
	if err := p.ctx.Err(); err != nil {
		panic(err)
	}
	var value api.Tensor
	if p.uninit {
		value = p.b.Alloc(dtype, shape...)
	} else {
		data := make([]float32, api.Shape(shape).NumElements())
		init(data, api.Shape(shape), paramRand(p.seed, name))
		value = api.FromFloat32s(p.b, data, shape...)
		if dtype != api.F32 {
			low := p.b.Alloc(dtype, shape...)
			p.b.Convert(low, value)
			value = low
		}
	}
	v := NewVar(value, true)
	p.index[name] = len(p.vars)
	p.names = append(p.names, name)
	p.vars = append(p.vars, v)
	return v
}

// paramRand returns the generator of one parameter: a PCG whose two seed
// words are the model seed and the FNV-1a hash of the parameter's full name.
func paramRand(seed int64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

// Scope builds parameter names under a dotted prefix, like candle's
// VarBuilder: p.Scope().Sub("layers").Index(3).Sub("mixer") names its
// parameters "layers.3.mixer.<name>". A Scope is a small value; copy it
// freely.
type Scope struct {
	p      *Params
	prefix string
}

// Sub returns the scope one level down, under name.
func (s Scope) Sub(name string) Scope {
	if name == "" {
		api.Panicf(api.ErrInternal, "nn: empty scope name under %q", s.prefix)
	}
	return Scope{p: s.p, prefix: s.Name(name)}
}

// Index returns the scope one level down under the decimal index i (the
// i-th of a list of layers).
func (s Scope) Index(i int) Scope { return s.Sub(strconv.Itoa(i)) }

// Name returns the full name of name in this scope.
func (s Scope) Name(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "." + name
}

// Prefix returns the scope's dotted prefix ("" at the root).
func (s Scope) Prefix() string { return s.prefix }

// Backend returns the backend the scope's parameters live on.
func (s Scope) Backend() api.Backend { return s.p.b }

// Param creates the parameter name in this scope with the given shape,
// filled by init. It panics when a parameter of that full name exists.
func (s Scope) Param(name string, init Init, shape ...int) *Var {
	return s.p.add(s.Name(name), init, shape, api.F32)
}

// Matrix creates the weight matrix name [rows, cols] in this scope, filled
// by init: a parameter stored in the dtype the collection gives weights
// (see Params.WithWeights), whose value is used only as the weight of
// x W^T products (Tape.Linear, LinearInto) and the table of Gather
// (Tape.Embedding).
func (s Scope) Matrix(name string, init Init, rows, cols int) *Var {
	return s.p.add(s.Name(name), init, []int{rows, cols}, s.p.WeightDType(cols))
}

// ModelParams gives a model whose parameters are a Params the parameter
// methods of api.LocalModel and api.Trainable (Backend, Parameters,
// Params, ReadParams, WriteParams, Grads, ZeroGrad): a model embeds it.
type ModelParams struct{ p *Params }

// NewModelParams returns the parameter methods of p.
func NewModelParams(p *Params) ModelParams { return ModelParams{p: p} }

// Backend returns the backend holding the parameters.
func (m ModelParams) Backend() api.Backend { return m.p.Backend() }

// Parameters returns every parameter under its checkpoint name.
func (m ModelParams) Parameters() []api.Parameter { return m.p.Parameters() }

// Params describes every parameter.
func (m ModelParams) Params() []api.ParamInfo { return api.ParamInfos(m.p.Parameters()) }

// ReadParams returns the values of the named parameters (all when names
// is empty).
func (m ModelParams) ReadParams(ctx context.Context, names []string) ([]api.HostTensor, error) {
	return api.ReadParameters(ctx, m.p.Parameters(), names)
}

// WriteParams overwrites parameters.
func (m ModelParams) WriteParams(ctx context.Context, values []api.HostTensor) error {
	m.p.Changed() // also when it fails part way
	return api.WriteParameters(ctx, m.p.Parameters(), values)
}

// Grads returns the accumulated gradients, named as Parameters.
func (m ModelParams) Grads() []api.Parameter { return m.p.Grads() }

// ZeroGrad sets every gradient to zero.
func (m ModelParams) ZeroGrad() { m.p.ZeroGrad() }

// StateLossAndGrad is api.StateTuner.StateLossAndGrad for a model whose
// parameters are params and whose initial state is the tensors ts (its
// snapshot's names and values, batch 1): on a recording tape with the
// parameters frozen, pass computes the loss from the state's tensors as
// Vars that learn, and StateLossAndGrad returns the loss with the
// gradients of those tensors, copied to the host under ts' names.
func StateLossAndGrad(ctx context.Context, params *Params, ts []api.Parameter, pass func(t *Tape, state []*Var) (*Var, error)) (float64, []api.HostTensor, error) {
	if err := CheckTrainable(params); err != nil {
		return 0, nil, err
	}
	defer params.Freeze()()
	vars := make([]*Var, len(ts))
	for i, p := range ts {
		vars[i] = NewVar(p.Value, true)
	}
	t := NewTape(params.Backend())
	mark := t.Mark()
	defer t.Release(mark)
	loss, err := pass(t, vars)
	if err != nil {
		return 0, nil, err
	}
	value := api.Float32s(loss.Value())[0]
	t.Backward(loss)
	grads := make([]api.Parameter, len(ts))
	for i, v := range vars {
		g := v.Grad()
		if g == nil { // no path from this tensor to the loss
			g = params.Backend().Alloc(api.F32, v.Shape()...)
		}
		grads[i] = api.Parameter{Name: ts[i].Name, Value: g}
	}
	host, err := api.ReadParameters(ctx, grads, nil)
	if err != nil {
		return 0, nil, err
	}
	return float64(value), host, nil
}
