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
