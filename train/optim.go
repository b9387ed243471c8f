package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/densessm/densessm/api"
)

// Optimizer names.
const (
	AdamW = api.AdamW
	SGD   = api.SGD
)

// OptimizerConfig describes an optimizer as data (api.OptimizerConfig).
type OptimizerConfig = api.OptimizerConfig

// DefaultOptimizer returns AdamW with lr 1e-3, betas (0.9, 0.95), eps 1e-8
// and weight decay 0.1, the usual settings for small language models.
func DefaultOptimizer() OptimizerConfig {
	return OptimizerConfig{Name: AdamW, LR: 1e-3, WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}
}

// Decays reports whether the default rule applies weight decay to the
// parameter name of the given shape: matrices and larger, except
// embeddings and Mamba's A_log. Vectors (norm weights, biases, Mamba's D
// and dt_proj bias) are never decayed.
func Decays(name string, shape api.Shape) bool {
	if len(shape) < 2 {
		return false
	}
	return !strings.Contains(name, "embed") && !strings.HasSuffix(name, "A_log")
}

// Optimizer updates parameters from their gradients. Its state (moments,
// momentum buffers) is float32, one buffer per parameter and slot, kept on
// the host.
type Optimizer struct {
	cfg   OptimizerConfig
	slots []string    // state slots per parameter, as checkpoints name them
	state [][]float32 // [param*len(slots)+slot]
	decay []bool
	names []string
	sizes []int
	steps int64 // updates made so far
}

// NewOptimizer returns an optimizer for params (names and shapes are
// fixed from here on).
func NewOptimizer(cfg OptimizerConfig, params []api.Parameter) (*Optimizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &Optimizer{cfg: cfg}
	switch cfg.Name {
	case AdamW:
		o.slots = []string{"exp_avg", "exp_avg_sq"}
	case SGD:
		if cfg.Momentum > 0 {
			o.slots = []string{"momentum_buffer"}
		}
	}
	for _, p := range params {
		n := p.Value.Shape().NumElements()
		for range o.slots {
			o.state = append(o.state, make([]float32, n))
		}
		o.decay = append(o.decay, cfg.DecayAll || Decays(p.Name, p.Value.Shape()))
		o.names = append(o.names, p.Name)
		o.sizes = append(o.sizes, n)
	}
	return o, nil
}

// Config returns the optimizer's configuration.
func (o *Optimizer) Config() OptimizerConfig { return o.cfg }

// Steps returns the number of updates made (or restored).
func (o *Optimizer) Steps() int64 { return o.steps }

// Step applies one update with learning rate lr to params from grads
// (same order and shapes as at NewOptimizer). AdamW follows PyTorch's
// torch.optim.AdamW: decoupled decay, then bias-corrected moments; SGD
// follows torch.optim.SGD (dampening 0; the first step's buffer is the
// gradient).
func (o *Optimizer) Step(params, grads []api.Parameter, lr float64) (err error) {
	defer api.Recover(&err)
	if len(params) != len(o.names) || len(grads) != len(o.names) {
		return fmt.Errorf("optimizer: %d parameters and %d gradients for %d tracked: %w", len(params), len(grads), len(o.names), api.ErrShape)
	}
	o.steps++
	for i := range params {
		p, g := api.ViewFloat32s(params[i].Value), api.ViewFloat32s(grads[i].Value)
		if len(p.V) != o.sizes[i] || len(g.V) != o.sizes[i] {
			return fmt.Errorf("optimizer: parameter %s: %d values and gradient %d, want %d: %w", o.names[i], len(p.V), len(g.V), o.sizes[i], api.ErrShape)
		}
		wd := 0.0
		if o.decay[i] {
			wd = o.cfg.WeightDecay
		}
		switch o.cfg.Name {
		case AdamW:
			o.adamw(p.V, g.V, o.state[2*i], o.state[2*i+1], lr, wd)
		case SGD:
			var buf []float32
			if len(o.slots) > 0 {
				buf = o.state[i]
			}
			o.sgd(p.V, g.V, buf, lr, wd)
		}
		p.WriteBack()
	}
	return nil
}

func (o *Optimizer) adamw(p, g, m, v []float32, lr, wd float64) {
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	t := float64(o.steps)
	bc1 := 1 - math.Pow(b1, t)
	bc2 := 1 - math.Pow(b2, t)
	stepSize := float32(lr / bc1)
	invSqrtBC2 := float32(1 / math.Sqrt(bc2))
	eps := float32(o.cfg.Eps)
	decay := float32(1 - lr*wd)
	fb1, fb2 := float32(b1), float32(b2)
	for j := range p {
		gj := g[j]
		m[j] = fb1*m[j] + (1-fb1)*gj
		v[j] = fb2*v[j] + (1-fb2)*gj*gj
		denom := float32(math.Sqrt(float64(v[j])))*invSqrtBC2 + eps
		p[j] = p[j]*decay - stepSize*m[j]/denom
	}
}

func (o *Optimizer) sgd(p, g, buf []float32, lr, wd float64) {
	mu, fwd, flr := float32(o.cfg.Momentum), float32(wd), float32(lr)
	first := o.steps == 1
	for j := range p {
		d := g[j] + fwd*p[j]
		if buf != nil {
			if first {
				buf[j] = d
			} else {
				buf[j] = mu*buf[j] + d
			}
			if o.cfg.Nesterov {
				d += mu * buf[j]
			} else {
				d = buf[j]
			}
		}
		p[j] -= flr * d
	}
}

// StateTensor is one buffer of optimizer state: Slot ("exp_avg",
// "exp_avg_sq", "momentum_buffer") of the parameter Param.
type StateTensor struct {
	Param, Slot string
	Values      []float32
}

// Name returns the name the buffer has in a checkpoint: slot/param.
func (s StateTensor) Name() string { return s.Slot + "/" + s.Param }

// State returns every buffer of state, sharing the optimizer's memory.
func (o *Optimizer) State() []StateTensor {
	out := make([]StateTensor, 0, len(o.state))
	for i, name := range o.names {
		for k, slot := range o.slots {
			out = append(out, StateTensor{Param: name, Slot: slot, Values: o.state[i*len(o.slots)+k]})
		}
	}
	return out
}

// Restore replaces the state with state (every buffer State names, with
// the same lengths) and the update count with steps.
func (o *Optimizer) Restore(state map[string][]float32, steps int64) error {
	for _, s := range o.State() {
		v, ok := state[s.Name()]
		if !ok {
			return fmt.Errorf("optimizer state: no %s: %w", s.Name(), api.ErrNotFound)
		}
		if len(v) != len(s.Values) {
			return fmt.Errorf("optimizer state %s: %d values, want %d: %w", s.Name(), len(v), len(s.Values), api.ErrShape)
		}
	}
	if len(state) != len(o.state) {
		return fmt.Errorf("optimizer state: %d buffers, want %d: %w", len(state), len(o.state), api.ErrShape)
	}
	for _, s := range o.State() {
		copy(s.Values, state[s.Name()])
	}
	o.steps = steps
	return nil
}
