package nn

import (
	"math"
	"math/rand/v2"

	"github.com/densessm/densessm/api"
)

// Init fills the values of a new parameter of the given shape (row-major)
// from r. Params hands every parameter its own r, seeded from the model seed
// and the parameter's name, so an Init draws the same values for the same
// seed and name on every run.
type Init func(dst []float32, shape api.Shape, r *rand.Rand)

// Normal draws from N(0, std^2).
func Normal(std float64) Init {
	return func(dst []float32, _ api.Shape, r *rand.Rand) {
		for i := range dst {
			dst[i] = float32(r.NormFloat64() * std)
		}
	}
}

// Uniform draws from U[lo, hi).
func Uniform(lo, hi float64) Init {
	return func(dst []float32, _ api.Shape, r *rand.Rand) {
		for i := range dst {
			dst[i] = float32(lo + (hi-lo)*r.Float64())
		}
	}
}

// FanInUniform draws from U(-1/sqrt(fanIn), 1/sqrt(fanIn)): PyTorch's
// default for the weight and bias of nn.Linear (fanIn = in features) and
// nn.Conv1d (fanIn = in channels / groups * kernel size).
func FanInUniform(fanIn int) Init {
	bound := 1 / math.Sqrt(float64(max(fanIn, 1)))
	return Uniform(-bound, bound)
}

// Constant sets every value to v.
func Constant(v float32) Init {
	return func(dst []float32, _ api.Shape, _ *rand.Rand) {
		for i := range dst {
			dst[i] = v
		}
	}
}

// Zeros sets every value to 0.
func Zeros() Init { return Constant(0) }

// Ones sets every value to 1.
func Ones() Init { return Constant(1) }

// Scaled multiplies what init draws by factor (Mamba divides out_proj's
// initial weights by sqrt(n_layer)).
func Scaled(init Init, factor float64) Init {
	return func(dst []float32, shape api.Shape, r *rand.Rand) {
		init(dst, shape, r)
		for i := range dst {
			dst[i] = float32(float64(dst[i]) * factor)
		}
	}
}

// MambaDtProjWeight is Mamba's dt_proj.weight rule ("random" dt_init):
// U(-s, s) with s = scale * dtRank^-0.5 (dt_scale is 1 by default).
func MambaDtProjWeight(dtRank int, scale float64) Init {
	s := scale / math.Sqrt(float64(max(dtRank, 1)))
	return Uniform(-s, s)
}

// MambaDtBias is Mamba's dt_proj.bias rule: dt is drawn log-uniform in
// [dtMin, dtMax] (1e-3 and 1e-1 by default), clamped to at least floor
// (1e-4), and the bias is its inverse softplus, dt + log(-expm1(-dt)), so
// that softplus(bias) = dt at initialisation.
func MambaDtBias(dtMin, dtMax, floor float64) Init {
	lo, hi := math.Log(dtMin), math.Log(dtMax)
	return func(dst []float32, _ api.Shape, r *rand.Rand) {
		for i := range dst {
			dt := max(math.Exp(lo+(hi-lo)*r.Float64()), floor)
			dst[i] = float32(dt + math.Log(-math.Expm1(-dt)))
		}
	}
}

// MambaALog is Mamba's A_log rule for a parameter [E,N]: A_log[e,n] =
// log(n+1), so that A = -exp(A_log) = -(n+1).
func MambaALog() Init {
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

// MambaD is Mamba's rule for the skip weight D [E]: all ones.
func MambaD() Init { return Ones() }
