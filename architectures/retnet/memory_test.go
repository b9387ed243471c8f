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
	knobs := []func(*dense.Config){
		func(d *dense.Config) { d.Projection = dense.ProjLinear },
		func(d *dense.Config) { d.Gate = dense.GateLinear },
		func(d *dense.Config) { d.Gate = dense.GateNone },
		func(d *dense.Config) { d.Fusion = dense.FuseConcat },
		func(d *dense.Config) { d.Norm = dense.NormNone },
		func(d *dense.Config) {
			d.Projection, d.Gate, d.Fusion = dense.ProjLinear, dense.GateLinear, dense.FuseConcat
		},
	}
	for i, k := range knobs {
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
	b := cpu.New(api.BackendOptions{Threads: 1})
	cfgs := estimateConfigs()
	cfgs["default-retnet"] = DefaultConfig(NameRetNet)
	cfgs["default-denseretnet"] = DefaultConfig(NameDenseRetNet)
	for name, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := New(c, b, 1)
		if err != nil {
			t.Fatal(err)
		}
		modeltest.CheckParameterCount(t, name, m, c.EstimateMemory())
	}
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
		e := c.EstimateMemory()
		for _, v := range []int64{e.Parameters, e.WeightBytes, e.StateBytes, e.Forward.Fixed, e.Forward.PerSequence,
			e.Forward.PerToken, e.Forward.PerTokenPair, e.Train.PerToken, e.ForwardBytes(pick(), pick())} {
			if v < 0 {
				t.Fatalf("negative estimate for %+v: %+v", c, e)
			}
		}
	}
}
