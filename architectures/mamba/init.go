package mamba

import (
	"math"
	"math/rand/v2"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/nn"
)

// Mamba's initialisation rules for the mixer's state-space parameters, as
// mamba_ssm's Mamba module draws them; the skip weight D starts at ones
// (nn.Ones).

// initDtProjWeight is the rule of dt_proj.weight ("random" dt_init): U(-s, s)
// with s = scale * dtRank^-0.5 (dt_scale is 1 by default).
func initDtProjWeight(dtRank int, scale float64) nn.Init {
	s := scale / math.Sqrt(float64(max(dtRank, 1)))
	return nn.Uniform(-s, s)
}

// initDtBias is the rule of dt_proj.bias: dt is drawn log-uniform in [dtMin,
// dtMax] (1e-3 and 1e-1 by default), clamped to at least floor (1e-4), and
// the bias is its inverse softplus, dt + log(-expm1(-dt)), so that
// softplus(bias) = dt at initialisation.
func initDtBias(dtMin, dtMax, floor float64) nn.Init {
	lo, hi := math.Log(dtMin), math.Log(dtMax)
	return func(dst []float32, _ api.Shape, r *rand.Rand) {
		for i := range dst {
			dt := max(math.Exp(lo+(hi-lo)*r.Float64()), floor)
			dst[i] = float32(dt + math.Log(-math.Expm1(-dt)))
		}
	}
}

// initALog is the rule of A_log [E,N]: A_log[e,n] = log(n+1), so that
// A = -exp(A_log) = -(n+1).
func initALog() nn.Init {
	return func(dst []float32, shape api.Shape, _ *rand.Rand) {
		n := 1
		if len(shape) > 0 {
			n = max(shape[len(shape)-1], 1)
		}
		for i := range dst {
			dst[i] = float32(math.Log(float64(i%n + 1)))
		}
	}
}
