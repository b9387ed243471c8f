package mamba

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

// estimateConfigs are small configurations of every variant: tied and
// untied embeddings, biases, dense links with m = 1, 2 and 4 into x or h,
// and each knob of the links.
func estimateConfigs() map[string]*Config {
	out := map[string]*Config{}
	for name, c := range variants() {
		out[name] = c
	}
	c := tinyConfig(NameMamba, "")
	c.UseBias, c.UseConvBias, c.TieWordEmbeddings = true, false, false
	out["mamba-bias-untied"] = c
	for _, m := range []int{1, 2, 4} {
		for _, target := range []string{TargetX, TargetH} {
			c := tinyConfig(NameDenseMamba, target)
			c.NumHiddenLayers = 5
			c.Dense.M = m
			out[fmt.Sprintf("densemamba-%s-m%d", target, m)] = c
		}
	}
	for i, k := range modeltest.DenseKnobs() {
		c := tinyConfig(NameDenseMamba, TargetX)
		c.NumHiddenLayers, c.Dense.M = 4, 2
		k(&c.Dense)
		out[fmt.Sprintf("densemamba-x-knobs%d", i)] = c
	}
	c = tinyConfig(NameDenseMamba, TargetH)
	c.Dense.Gate = dense.GateNone
	out["densemamba-h-nogate"] = c
	c = tinyConfig(NameDenseMamba, TargetX)
	c.UseBias, c.TieWordEmbeddings = true, true
	out["densemamba-x-bias-tied"] = c
	return out
}

// TestEstimateParameters checks the parameter count against the models'
// parameters, for the defaults and the small configurations, and against
// mamba-130m's published count without building it.
func TestEstimateParameters(t *testing.T) {
	cfgs := estimateConfigs()
	cfgs["default-mamba"] = DefaultConfig(NameMamba)
	cfgs["default-densemamba"] = DefaultConfig(NameDenseMamba)
	modeltest.CheckParameterCounts(t, cfgs, cpu.New(api.BackendOptions{Threads: 1}))
	if got := mamba130m().EstimateMemory().Parameters; got != 129_135_360 {
		t.Errorf("mamba-130m: %d parameters, want 129,135,360", got)
	}
}

// TestEstimateSaturates checks that absurd and invalid configurations give
// estimates without overflow or panic.
func TestEstimateSaturates(t *testing.T) {
	huge := DefaultConfig(NameDenseMamba)
	huge.VocabSize, huge.HiddenSize, huge.NumHiddenLayers = math.MaxInt, math.MaxInt, math.MaxInt
	huge.IntermediateSize, huge.StateSize, huge.ConvKernel = math.MaxInt, math.MaxInt, math.MaxInt
	huge.Dense.M, huge.Dense.Fusion = math.MaxInt, dense.FuseConcat
	e := huge.EstimateMemory()
	if e.Parameters != math.MaxInt64 || e.WeightBytes != math.MaxInt64 || e.ForwardBytes(1, 1) != math.MaxInt64 ||
		e.StateBytes != math.MaxInt64 || e.TrainingBytes(math.MaxInt, math.MaxInt, 2) != math.MaxInt64 {
		t.Errorf("absurd config: %+v", e)
	}
	// The brief's example: 100000 layers of width 65536 is refused by
	// Validate, and its estimate is petabytes, not a wrapped number.
	big := DefaultConfig(NameMamba)
	big.HiddenSize, big.NumHiddenLayers, big.IntermediateSize = 65536, 100000, 2*65536
	if e := big.EstimateMemory(); e.WeightBytes < 1<<50 {
		t.Errorf("65536 x 100000 layers: %d weight bytes", e.WeightBytes)
	}
	r := rand.New(rand.NewPCG(3, 4))
	pick := func() int {
		return []int{math.MinInt, -1, 0, 1, 3, 1 << 20, math.MaxInt32, math.MaxInt}[r.IntN(8)]
	}
	for range 2000 {
		c := DefaultConfig([]string{NameMamba, NameDenseMamba}[r.IntN(2)])
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize = pick(), pick(), pick(), pick()
		c.ConvKernel, c.IntermediateSize, c.TimeStepRank, c.Dense.M = pick(), pick(), pick(), pick()
		c.Dense.GateRatio = pick()
		c.DenseTarget = []string{TargetX, TargetH, "?"}[r.IntN(3)]
		modeltest.CheckEstimateNonNegative(t, fmt.Sprintf("%+v", *c), c.EstimateMemory(), pick(), pick())
	}
}

// TestMemoryEstimateMethods checks api.MemoryEstimate's arithmetic on a
// hand-made estimate.
func TestMemoryEstimateMethods(t *testing.T) {
	e := api.MemoryEstimate{
		Parameters: 10, WeightBytes: 40, StateBytes: 7,
		Forward: api.ActivationBytes{Fixed: 100, PerSequence: 10, PerToken: 3, PerTokenPair: 2},
		Train:   api.ActivationBytes{Fixed: 1, PerToken: 5},
	}
	for _, tc := range []struct{ got, want int64 }{
		{e.ForwardBytes(2, 4), 100 + 2*10 + 2*4*3 + 2*4*4*2},
		{e.ForwardBytes(-1, 4), 100},
		{e.TrainBytes(3, 2), 1 + 3*2*5},
		{e.InferenceBytes(2, 4), 40 + 2*7 + e.ForwardBytes(2, 4)},
		{e.TrainingBytes(1, 1, 2), 4*40 + 6},
		{e.TrainingBytes(1, 1, -3), 2*40 + 6},
		{e.ForwardBytes(math.MaxInt, 2), math.MaxInt64},
		{e.ForwardBytes(1<<20, 1<<30), math.MaxInt64}, // the T*T term overflows
		{e.InferenceBytes(math.MaxInt, 0), math.MaxInt64},
		{e.TrainingBytes(0, 0, math.MaxInt), math.MaxInt64},
	} {
		if tc.got != tc.want {
			t.Errorf("got %d, want %d", tc.got, tc.want)
		}
	}
	if est, ok := api.EstimateMemory(DefaultConfig(NameMamba)); !ok || est.Parameters == 0 {
		t.Errorf("api.EstimateMemory of a mamba config: %+v, %v", est, ok)
	}
}
