package retnet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// estimateConfigs are small configurations of both architectures: tied
// and untied embeddings, a padding row, dense links with m = 0, 1, 2 and
// 4, and each knob of the links.
func estimateConfigs() map[string]*Config {
	out := variants()
	for _, m := range []int{1, 2, 4} {
		c := tinyConfig(NameDenseRetNet, m)
		c.NumHiddenLayers = 5
		out[fmt.Sprintf("denseretnet-m%d-5layers", m)] = c
	}
	pad := tinyConfig(NameDenseRetNet, 2)
	pad.PadTokenID, pad.TieWordEmbeddings = new(int), true
	out["denseretnet-pad-tied"] = pad
	for i, k := range modeltest.DenseKnobs() {
		c := tinyConfig(NameDenseRetNet, 2)
		c.NumHiddenLayers = 4
		k(&c.Dense)
		out[fmt.Sprintf("denseretnet-knobs%d", i)] = c
	}
	m0 := tinyConfig(NameDenseRetNet, 0)
	m0.Dense.Norm = dense.NormNone
	out["denseretnet-m0-nonorm"] = m0
	return out
}

// TestEstimateParameters checks the parameter count against the models'
// parameters, for the defaults and the small configurations.
func TestEstimateParameters(t *testing.T) {
	cfgs := estimateConfigs()
	cfgs["default-retnet"] = DefaultConfig(NameRetNet)
	cfgs["default-denseretnet"] = DefaultConfig(NameDenseRetNet)
	modeltest.CheckParameterCounts(t, cfgs, cpu.New(api.BackendOptions{Threads: 1}))
}

// TestEstimateSaturates checks that absurd and invalid configurations give
// estimates without overflow or panic.
func TestEstimateSaturates(t *testing.T) {
	huge := DefaultConfig(NameDenseRetNet)
	huge.VocabSize, huge.HiddenSize, huge.NumHiddenLayers = math.MaxInt, math.MaxInt, math.MaxInt
	huge.QueryKeyDim, huge.ValueDim, huge.NumAttentionHeads = math.MaxInt, math.MaxInt, 1
	huge.Dense.M, huge.Dense.Fusion = math.MaxInt, dense.FuseConcat
	e := huge.EstimateMemory()
	if e.Parameters != math.MaxInt64 || e.WeightBytes != math.MaxInt64 || e.ForwardBytes(1, 1) != math.MaxInt64 ||
		e.StateBytes != math.MaxInt64 || e.TrainingBytes(1, math.MaxInt, 2) != math.MaxInt64 {
		t.Errorf("absurd config: %+v", e)
	}
	r := rand.New(rand.NewPCG(3, 4))
	pick := func() int {
		return []int{math.MinInt, -1, 0, 1, 3, 1 << 20, math.MaxInt32, math.MaxInt}[r.IntN(8)]
	}
	for range 2000 {
		c := DefaultConfig([]string{NameRetNet, NameDenseRetNet}[r.IntN(2)])
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = pick(), pick(), pick(), pick()
		c.QueryKeyDim, c.ValueDim, c.FFNDim, c.Dense.M = pick(), pick(), pick(), pick()
		c.Dense.GateRatio, c.DenseVGateRatio = pick(), pick()
		modeltest.CheckEstimateNonNegative(t, fmt.Sprintf("%+v", *c), c.EstimateMemory(), pick(), pick())
	}
}
