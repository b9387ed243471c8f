package dense

import (
	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/nn"
)

// Names are the checkpoint names of a Link's parameters, relative to the
// scope the Link is made in. DenseRetNet uses the official code's names
// ("k_select.fc1", "k_norm", ...); DenseMamba uses DefaultNames.
type Names struct {
	GateIn  string // silu-mlp gate, first layer [d/r, d]
	GateOut string // silu-mlp gate, second layer [W, d/r]; also the linear gate [W, d]
	Proj    string // linear projection [W, W]
	Fuse    string // concat fusion [W, (m+1)W]
	Norm    string // RMSNorm after fusion [W]
}

// DefaultNames are the names DenseMamba gives its link parameters, under
// "backbone.layers.{i}.mixer.".
var DefaultNames = Names{
	GateIn:  "dense_gate.fc1",
	GateOut: "dense_gate.fc2",
	Proj:    "dense_proj",
	Fuse:    "dense_fuse",
	Norm:    "dense_norm",
}

// Link is the dense connection into one layer: it takes the layer's own
// tensor x [..., W], the tensors of up to M previous layers for the same
// tokens, and the layer's input u [..., d] that computes the gate.
type Link struct {
	cfg     Config
	width   int
	gateIn  *nn.Linear // silu-mlp only
	gateOut *nn.Linear // silu-mlp and linear gates
	proj    *nn.Linear // linear projection only
	fuse    *nn.Linear // concat fusion only
	norm    *nn.RMSNorm
}

// NewLink creates the parameters of a link in scope s for input width d and
// linked width W, initialised N(0, std) (norm weights 1). cfg.M must be > 0.
func NewLink(s nn.Scope, cfg Config, names Names, d, width int, eps float32, std float64) *Link {
	l := &Link{cfg: cfg, width: width}
	init := nn.Normal(std)
	switch cfg.Gate {
	case GateSiluMLP:
		hidden := cfg.GateHidden(d)
		l.gateIn = nn.NewLinear(s.Sub(names.GateIn), d, hidden, init, nil)
		l.gateOut = nn.NewLinear(s.Sub(names.GateOut), hidden, width, init, nil)
	case GateLinear:
		l.gateOut = nn.NewLinear(s.Sub(names.GateOut), d, width, init, nil)
	}
	if cfg.Projection == ProjLinear {
		l.proj = nn.NewLinear(s.Sub(names.Proj), width, width, init, nil)
	}
	if cfg.Fusion == FuseConcat {
		l.fuse = nn.NewLinear(s.Sub(names.Fuse), (cfg.M+1)*width, width, init, nil)
	}
	if cfg.Norm == NormRMS {
		l.norm = nn.NewRMSNorm(s.Sub(names.Norm), width, eps)
	}
	return l
}

// Gate returns the selection gate a [..., W] for the layer input u [..., d],
// or nil for GateNone (a = 1).
func (l *Link) Gate(t *nn.Tape, u *nn.Var) *nn.Var {
	switch {
	case l.gateIn != nil:
		h := t.Unary(api.OpSilu, l.gateIn.Forward(t, u))
		return t.Unary(api.OpSilu, l.gateOut.Forward(t, h))
	case l.gateOut != nil:
		return l.gateOut.Forward(t, u)
	}
	return nil
}

// Fuse returns the fused tensor for x [..., W] given the previous layers'
// tensors prev (nearest first: layer l-1, l-2, ...; at most M of them, each
// [..., W]) and the gate a from Gate (nil for none):
//
//	add:    norm(x + sum_p a * proj(x_p))
//	concat: norm(Wc [x; a*proj(x_{l-1}); a*proj(x_{l-2}); ...]), with zeros
//	        in the slots of layers before the first
//
// With no previous layers (the first layer) it returns x unchanged.
func (l *Link) Fuse(t *nn.Tape, x *nn.Var, prev []*nn.Var, a *nn.Var) *nn.Var {
	if len(prev) == 0 {
		return x
	}
	sel := func(p *nn.Var) *nn.Var {
		if l.proj != nil {
			p = l.proj.Forward(t, p)
		}
		if a != nil {
			p = t.Mul(a, p)
		}
		return p
	}
	var fused *nn.Var
	if l.fuse != nil {
		parts := []*nn.Var{x}
		for _, p := range prev {
			parts = append(parts, sel(p))
		}
		for len(parts) < l.cfg.M+1 {
			zero := nn.NewVar(t.Backend().Alloc(api.F32, x.Shape()...), false)
			parts = append(parts, zero)
		}
		fused = l.fuse.Forward(t, t.Concat(-1, parts...))
	} else {
		fused = x
		for _, p := range prev {
			fused = t.Add(fused, sel(p))
		}
	}
	if l.norm != nil {
		fused = l.norm.Forward(t, fused)
	}
	return fused
}

// StepScratch holds the buffers of FuseStep for one batch size, so that a
// decode step allocates nothing.
type StepScratch struct {
	hidden, gate, sel, acc, cat, out api.Tensor
}

// Gate returns the buffer GateStep writes the gate [rows, W] into, or nil
// for GateNone, so that callers can make views of it once.
func (s *StepScratch) Gate() api.Tensor { return s.gate }

// NewStepScratch allocates FuseStep's buffers for rows of one token each.
func (l *Link) NewStepScratch(b api.Backend, rows, d int) *StepScratch {
	s := &StepScratch{sel: b.Alloc(api.F32, rows, l.width), acc: b.Alloc(api.F32, rows, l.width)}
	if l.gateIn != nil {
		s.hidden = b.Alloc(api.F32, rows, l.cfg.GateHidden(d))
	}
	if l.gateOut != nil {
		s.gate = b.Alloc(api.F32, rows, l.width)
	}
	if l.fuse != nil {
		s.cat = b.Alloc(api.F32, rows, (l.cfg.M+1)*l.width)
	}
	if l.norm != nil {
		s.out = b.Alloc(api.F32, rows, l.width)
	}
	return s
}

// GateStep is Gate for one token per row, u [rows, d]: it returns the gate
// [rows, W] in s's buffer, or nil for GateNone.
func (l *Link) GateStep(b api.Backend, s *StepScratch, u api.Tensor) api.Tensor {
	switch {
	case l.gateIn != nil:
		b.MatMul(s.hidden, u, l.gateIn.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSilu, s.hidden, s.hidden)
		b.MatMul(s.gate, s.hidden, l.gateOut.Weight.Value(), false, true, 1, 0)
		b.Unary(api.OpSilu, s.gate, s.gate)
		return s.gate
	case l.gateOut != nil:
		b.MatMul(s.gate, u, l.gateOut.Weight.Value(), false, true, 1, 0)
		return s.gate
	}
	return nil
}

// FuseStep is Fuse for one token per row, with kernels writing into s:
// x [rows, W], prev nearest first (each [rows, W]), u [rows, d]. The result
// belongs to s and is overwritten by the next call.
func (l *Link) FuseStep(b api.Backend, s *StepScratch, x api.Tensor, prev []api.Tensor, u api.Tensor) api.Tensor {
	if len(prev) == 0 {
		return x
	}
	gate := l.GateStep(b, s, u)
	// sel = a * proj(p), written into s.sel.
	selected := func(p api.Tensor) api.Tensor {
		if l.proj != nil {
			b.MatMul(s.sel, p, l.proj.Weight.Value(), false, true, 1, 0)
			p = s.sel
		}
		if gate != nil {
			b.Binary(api.OpMul, s.sel, gate, p)
			p = s.sel
		}
		return p
	}
	fused := s.acc
	if l.fuse != nil {
		b.Fill(s.cat, 0)
		b.SetSlice(s.cat, x, 1, 0)
		for i, p := range prev {
			b.SetSlice(s.cat, selected(p), 1, (i+1)*l.width)
		}
		b.MatMul(s.acc, s.cat, l.fuse.Weight.Value(), false, true, 1, 0)
	} else {
		b.Copy(s.acc, x)
		for _, p := range prev {
			b.Binary(api.OpAdd, s.acc, s.acc, selected(p))
		}
	}
	if l.norm != nil {
		b.RMSNorm(s.out, fused, l.norm.Weight.Value(), l.norm.Eps)
		fused = s.out
	}
	return fused
}
