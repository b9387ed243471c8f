package nn

import (
	"math"

	"github.com/densessm/densessm/api"
)

// Linear is y = x W^T + b with W [out, in] (PyTorch layout) named
// "<scope>.weight" and an optional bias b [out] named "<scope>.bias".
type Linear struct {
	Weight *Var // [out, in]
	Bias   *Var // [out], or nil
}

// NewLinear creates a Linear layer's parameters in scope s: the weight
// [out, in] (a Scope.Matrix) filled by wInit and, when bInit is not nil, the bias [out] filled
// by bInit.
func NewLinear(s Scope, in, out int, wInit, bInit Init) *Linear {
	l := &Linear{Weight: s.Matrix("weight", wInit, out, in)}
	if bInit != nil {
		l.Bias = s.Param("bias", bInit, out)
	}
	return l
}

// Forward maps x [..., in] to [..., out].
func (l *Linear) Forward(t *Tape, x *Var) *Var { return t.Linear(x, l.Weight, l.Bias) }

// Embedding is a lookup table [V, D] named "<scope>.weight".
type Embedding struct {
	Weight *Var // [V, D]
}

// NewEmbedding creates an embedding table [vocab, dim] (a Scope.Matrix) in
// scope s, filled by init.
func NewEmbedding(s Scope, vocab, dim int, init Init) *Embedding {
	return &Embedding{Weight: s.Matrix("weight", init, vocab, dim)}
}

// Forward maps I32 ids [S...] to their rows [S..., D].
func (e *Embedding) Forward(t *Tape, ids api.Tensor) *Var { return t.Embedding(e.Weight, ids) }

// RMSNorm is x * rsqrt(mean(x^2) + eps) * w over the last axis, with the
// weight w [D] named "<scope>.weight" and initialised to ones.
type RMSNorm struct {
	Weight *Var // [D]
	Eps    float32
}

// NewRMSNorm creates an RMSNorm over dim features in scope s.
func NewRMSNorm(s Scope, dim int, eps float32) *RMSNorm {
	return &RMSNorm{Weight: s.Param("weight", Ones(), dim), Eps: eps}
}

// Forward normalises x [..., D].
func (n *RMSNorm) Forward(t *Tape, x *Var) *Var { return t.RMSNorm(x, n.Weight, n.Eps) }

// CausalConv1d is Mamba's depthwise causal convolution over C channels with
// kernel size K. Its weight "<scope>.weight" is stored [C, 1, K], as
// PyTorch's grouped Conv1d and checkpoints hold it (Mamba's conv1d.weight is
// [E, 1, K]), and is viewed as [C, K] for the kernel; the optional bias [C]
// is "<scope>.bias".
type CausalConv1d struct {
	Weight *Var // [C, 1, K]
	Bias   *Var // [C], or nil
}

// NewCausalConv1d creates the convolution's parameters in scope s: the
// weight [channels, 1, kernel] filled by wInit and, when bInit is not nil,
// the bias [channels] filled by bInit. PyTorch's default for both is
// FanInUniform(kernel).
func NewCausalConv1d(s Scope, channels, kernel int, wInit, bInit Init) *CausalConv1d {
	c := &CausalConv1d{Weight: s.Param("weight", wInit, channels, 1, kernel)}
	if bInit != nil {
		c.Bias = s.Param("bias", bInit, channels)
	}
	return c
}

// Forward convolves x [B,T,C] along time, channels last; prev [B,K-1,C] holds
// the K-1 inputs before the first token (oldest first), or is nil for zeros.
// The result is [B,T,C].
func (c *CausalConv1d) Forward(t *Tape, x, prev *Var) *Var {
	ws := c.Weight.Shape()
	w := t.Reshape(c.Weight, ws[0], ws[2]) // [C,1,K] -> [C,K]
	return t.CausalConv1d(x, w, c.Bias, prev)
}

// Rotary is torchscale's rotation of interleaved pairs by position for a
// head width d; it has no parameters.
type Rotary struct {
	Theta []float32 // [d/2]
}

// NewRotary returns the rotation for heads of even width headDim, with
// RotaryTheta's angles.
func NewRotary(headDim int) *Rotary { return &Rotary{Theta: RotaryTheta(headDim)} }

// RotaryTheta returns torchscale's angles for a head of even width d:
// theta_i = 1 / 10000^(i/(d/2-1)) for i = 0..d/2-1 (10000^-linspace(0, 1,
// d/2), not the 2i/d of RoFormer), computed in float64 and rounded. For d = 2
// it is [1], as linspace(0, 1, 1) = [0].
func RotaryTheta(d int) []float32 {
	if d <= 0 || d%2 != 0 {
		api.Panicf(api.ErrShape, "nn.RotaryTheta: head width %d is not a positive even number", d)
	}
	half := d / 2
	theta := make([]float32, half)
	for i := range theta {
		frac := 0.0
		if half > 1 {
			frac = float64(i) / float64(half-1)
		}
		theta[i] = float32(1 / math.Pow(10000, frac))
	}
	return theta
}

// Forward rotates x [..., T, d] whose first token sits at absolute position
// offset.
func (r *Rotary) Forward(t *Tape, x *Var, offset int) *Var { return t.Rotary(x, r.Theta, offset) }
