// Package dense holds the DenseSSM pieces that DenseMamba and DenseRetNet
// share (specs/models.md §4–5): the selective transition that hands a layer
// the tensors of its m previous layers for the same token (a projection
// times a gate computed from the layer's input), and the fusion of those
// tensors into the layer's own (addition or concatenation, then an optional
// RMSNorm).
package dense

import (
	"fmt"

	"github.com/densessm/densessm/api"
)

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

// Validate reports an unknown knob value or a negative count, wrapping
// api.ErrConfig.
func (c Config) Validate() error {
	bad := func(what string, v any) error { return fmt.Errorf("dense %s %v: %w", what, v, api.ErrConfig) }
	switch {
	case c.M < 0:
		return bad("m", c.M)
	case c.M == 0:
		return nil
	case c.Projection != ProjIdentity && c.Projection != ProjLinear:
		return bad("projection", fmt.Sprintf("%q (want identity or linear)", c.Projection))
	case c.Gate != GateSiluMLP && c.Gate != GateLinear && c.Gate != GateNone:
		return bad("gate", fmt.Sprintf("%q (want silu-mlp, linear or none)", c.Gate))
	case c.Gate == GateSiluMLP && c.GateRatio < 1:
		return bad("gate_ratio", c.GateRatio)
	case c.Fusion != FuseAdd && c.Fusion != FuseConcat:
		return bad("fusion", fmt.Sprintf("%q (want add or concat)", c.Fusion))
	case c.Norm != NormRMS && c.Norm != NormNone:
		return bad("norm", fmt.Sprintf("%q (want rmsnorm or none)", c.Norm))
	}
	return nil
}

// GateHidden returns the bottleneck width of the silu-mlp gate for input
// width d: max(1, d/r).
func (c Config) GateHidden(d int) int { return max(1, d/max(1, c.GateRatio)) }
