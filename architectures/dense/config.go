// Package dense holds the DenseSSM pieces that DenseMamba and DenseRetNet
// share (specs/models.md §4–5): the selective transition that hands a layer
// the tensors of its m previous layers for the same token (a projection
// times a gate computed from the layer's input), and the fusion of those
// tensors into the layer's own (addition or concatenation, then an optional
// RMSNorm).
package dense

import "github.com/densessm/densessm/architectures/cfgcheck"

// The values the string knobs of Config take.
const (
	ProjIdentity = "identity" // the previous layers' tensors as they are
	ProjLinear   = "linear"   // one learned [W,W] map shared by the previous layers

	GateSiluMLP = "silu-mlp" // a = silu(W2 silu(W1 u)), d -> max(1, d/r) -> W
	GateLinear  = "linear"   // a = Wg u, d -> W
	GateNone    = "none"     // a = 1

	FuseAdd    = "add"    // x + sum_p a*proj(x_p)
	FuseConcat = "concat" // Wc [x; a*proj(x_1); ...; a*proj(x_m)], (m+1)W -> W

	NormRMS  = "rmsnorm" // RMSNorm over the full width after fusion
	NormNone = "none"
)

// Config is the set of ablation knobs of the paper (specs/models.md §5).
// The zero value means "no dense links" (M = 0).
type Config struct {
	M          int    `json:"m"`          // number of previous layers linked; 0 turns the links off
	Projection string `json:"projection"` // ProjIdentity or ProjLinear
	Gate       string `json:"gate"`       // GateSiluMLP, GateLinear or GateNone
	GateRatio  int    `json:"gate_ratio"` // bottleneck ratio r of GateSiluMLP
	Fusion     string `json:"fusion"`     // FuseAdd or FuseConcat
	Norm       string `json:"norm"`       // NormRMS or NormNone
}

// Defaults returns the knobs of the paper's main setting with m previous
// layers: identity projection, silu-mlp gate with bottleneck ratio 32,
// fusion by addition, RMSNorm after fusion.
func Defaults(m int) Config {
	return Config{M: m, Projection: ProjIdentity, Gate: GateSiluMLP, GateRatio: 32, Fusion: FuseAdd, Norm: NormRMS}
}

// Validate checks every knob against its domain, wrapping api.ErrConfig;
// the error names the knob by its JSON field ("m", "gate_ratio", ...):
//
//	m           0 .. 2^16
//	projection  identity or linear
//	gate        silu-mlp, linear or none
//	gate_ratio  0 .. 2^20, and >= 1 with the silu-mlp gate
//	fusion      add or concat
//	norm        rmsnorm or none
//
// With m = 0 (no links) the string knobs may also be empty and the ratio
// 0, as in the zero Config.
func (c Config) Validate() error {
	k := cfgcheck.New("dense config")
	k.Int("m", c.M, 0, cfgcheck.MaxLayers)
	k.Int("gate_ratio", c.GateRatio, 0, cfgcheck.MaxRatio)
	if !k.OK() {
		return k.Err()
	}
	var empty []string
	if c.M == 0 {
		empty = []string{""}
	}
	k.OneOf("projection", c.Projection, append([]string{ProjIdentity, ProjLinear}, empty...)...)
	k.OneOf("gate", c.Gate, append([]string{GateSiluMLP, GateLinear, GateNone}, empty...)...)
	if k.OK() && c.M > 0 && c.Gate == GateSiluMLP && c.GateRatio < 1 {
		k.Fail("gate_ratio", c.GateRatio, "must be > 0 with the silu-mlp gate")
	}
	k.OneOf("fusion", c.Fusion, append([]string{FuseAdd, FuseConcat}, empty...)...)
	k.OneOf("norm", c.Norm, append([]string{NormRMS, NormNone}, empty...)...)
	return k.Err()
}

// GateHidden returns the bottleneck width of the silu-mlp gate for input
// width d: max(1, d/r).
func (c Config) GateHidden(d int) int { return max(1, d/max(1, c.GateRatio)) }
