package train

import (
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
)

// Schedule kinds.
const (
	Constant = "constant"
	Cosine   = "cosine"
	Linear   = "linear"
)

// Schedule scales the peak learning rate over the steps of a run: a linear
// warmup from 0 over Warmup steps, then constant, a cosine decay or a
// linear decay to MinRatio·peak at the last step.
type Schedule struct {
	Kind     string  `json:"kind"`
	Warmup   int     `json:"warmup"`
	MinRatio float64 `json:"min_lr_ratio"`
}

// Validate checks the schedule for a run of steps updates.
func (s Schedule) Validate(steps int) error {
	switch s.Kind {
	case Constant, Cosine, Linear:
	default:
		return fmt.Errorf("--schedule %q: want %s, %s or %s: %w", s.Kind, Constant, Cosine, Linear, api.ErrConfig)
	}
	if s.Warmup < 0 || s.Warmup > steps {
		return fmt.Errorf("--warmup %d: want 0 to --steps (%d): %w", s.Warmup, steps, api.ErrConfig)
	}
	if !(s.MinRatio >= 0 && s.MinRatio <= 1) {
		return fmt.Errorf("--min-lr-ratio %g: want 0 to 1: %w", s.MinRatio, api.ErrConfig)
	}
	return nil
}

// Factor returns the multiplier of the peak learning rate at step (0 for
// the first update) of a run of steps updates. During warmup it is
// (step+1)/Warmup, so that the first update already moves; afterwards the
// decay runs from 1 at the end of warmup to MinRatio at the last step.
func (s Schedule) Factor(step, steps int) float64 {
	if step < s.Warmup {
		return float64(step+1) / float64(s.Warmup)
	}
	if s.Kind == Constant {
		return 1
	}
	span := steps - 1 - s.Warmup
	if span <= 0 {
		return 1
	}
	progress := math.Min(1, float64(step-s.Warmup)/float64(span))
	var f float64
	switch s.Kind {
	case Cosine:
		f = 0.5 * (1 + math.Cos(math.Pi*progress))
	default: // Linear
		f = 1 - progress
	}
	return s.MinRatio + (1-s.MinRatio)*f
}
