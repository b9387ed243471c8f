package mamba

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// weightBytesConfigs are configurations whose weight matrices Q8_0 holds
// none of (widths of 40: estimateConfigs, with tied and untied heads,
// biases, dense links into x and h and each knob of the links), all of
// (lowPrecisionConfigs' Mamba, tied and untied), or some and not others:
// widths of 48 with an inner width of 96 (x_proj and out_proj whole
// blocks; the embeddings, in_proj, dt_proj and the head not), the dense
// links' narrow gates, and the defaults (dt_proj of rank 8).
func weightBytesConfigs() map[string]*Config {
	out := estimateConfigs()
	for name, c := range lowPrecisionConfigs() {
		out["q8-"+name] = c
	}
	untied := lowPrecisionConfigs()["mamba"]
	untied.TieWordEmbeddings = false
	out["q8-mamba-untied"] = untied
	odd := func(arch, target string) *Config {
		c := tinyConfig(arch, target)
		c.HiddenSize, c.IntermediateSize, c.TimeStepRank = 48, 96, 5
		return c
	}
	c := odd(NameMamba, "")
	c.TieWordEmbeddings, c.UseBias = false, true
	out["mixed-mamba-untied-bias"] = c
	out["mixed-mamba-tied"] = odd(NameMamba, "")
	out["mixed-densemamba-x"] = odd(NameDenseMamba, TargetX)
	out["mixed-densemamba-h"] = odd(NameDenseMamba, TargetH)
	c = odd(NameDenseMamba, TargetX)
	c.Dense.Projection, c.Dense.Gate, c.Dense.Fusion = dense.ProjLinear, dense.GateLinear, dense.FuseConcat
	out["mixed-densemamba-x-proj-linear-concat"] = c
	out["default-mamba"] = DefaultConfig(NameMamba)
	out["default-densemamba"] = DefaultConfig(NameDenseMamba)
	return out
}

// TestEstimateWeightBytes checks the estimate's weight bytes for F32,
// BF16 and Q8_0 weights against the parameters of models built with each
// (modeltest.CheckWeightBytes).
func TestEstimateWeightBytes(t *testing.T) {
	modeltest.CheckWeightBytes(t, weightBytesConfigs(), cpu.New(api.BackendOptions{Threads: 1}))
}
