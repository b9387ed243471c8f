package mamba

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// lowPrecisionConfigs are the variants of tinyConfig with widths that are
// multiples of 32, so that Q8_0 holds every weight matrix.
func lowPrecisionConfigs() map[string]*Config {
	out := map[string]*Config{}
	for name, c := range variants() {
		c.HiddenSize, c.IntermediateSize = 64, 0
		c.fillDerived(true, true)
		c.TimeStepRank = 32
		out[name] = c
	}
	return out
}

// TestLowPrecisionWeights runs modeltest.CheckLowPrecision on every
// variant.
func TestLowPrecisionWeights(t *testing.T) {
	for name, cfg := range lowPrecisionConfigs() {
		t.Run(name, func(t *testing.T) {
			modeltest.CheckLowPrecision(t, cfg, cpu.New(api.BackendOptions{Threads: 2}))
		})
	}
}
