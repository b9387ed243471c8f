package retnet

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestLowPrecisionWeights runs modeltest.CheckLowPrecision on RetNet
// (tied and untied) and DenseRetNet with widths that are multiples of 32,
// so that Q8_0 holds every weight matrix.
func TestLowPrecisionWeights(t *testing.T) {
	for name, cfg := range variants() {
		if cfg.ModelType == NameRetNet {
			cfg.HiddenSize, cfg.NumAttentionHeads, cfg.QueryKeyDim, cfg.ValueDim, cfg.FFNDim = 64, 2, 64, 96, 128
		}
		t.Run(name, func(t *testing.T) {
			modeltest.CheckLowPrecision(t, cfg, cpu.New(api.BackendOptions{Threads: 2}))
		})
	}
}
