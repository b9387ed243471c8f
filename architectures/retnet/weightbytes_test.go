package retnet

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// weightBytesConfigs are configurations whose weight matrices Q8_0 holds
// none of (RetNet of width 24), all of (RetNet of width 64, tied and
// untied), or some and not others: RetNet whose fc2 has 80 columns,
// DenseRetNet (its links' gates have 4 and 8 columns) with each knob of
// the links, a padding row and a tied head, and the defaults.
func weightBytesConfigs() map[string]*Config {
	out := estimateConfigs()
	for tie, name := range map[bool]string{false: "untied", true: "tied"} {
		c := tinyConfig(NameRetNet, 0)
		c.HiddenSize, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim, c.FFNDim = 64, 2, 64, 96, 128
		c.TieWordEmbeddings = tie
		out["q8-retnet-"+name] = c
		mixed := *c
		mixed.FFNDim = 80
		out["mixed-retnet-"+name] = &mixed
	}
	c := tinyConfig(NameDenseRetNet, 2)
	c.Dense.Projection, c.Dense.Gate, c.Dense.Fusion = dense.ProjLinear, dense.GateLinear, dense.FuseConcat
	c.TieWordEmbeddings = false
	out["denseretnet-proj-linear-concat-untied"] = c
	out["default-retnet"] = DefaultConfig(NameRetNet)
	out["default-denseretnet"] = DefaultConfig(NameDenseRetNet)
	return out
}

// TestEstimateWeightBytes checks the estimate's weight bytes for F32,
// BF16 and Q8_0 weights against the parameters of models built with each
// (modeltest.CheckWeightBytes).
func TestEstimateWeightBytes(t *testing.T) {
	modeltest.CheckWeightBytes(t, weightBytesConfigs(), cpu.New(api.BackendOptions{Threads: 1}))
}
