package mamba

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestConfigDomains checks, for every field of every form ParseConfig
// reads, that values outside the field's domain are refused with an error
// that wraps api.ErrConfig and names the field as the file spells it.
func TestConfigDomains(t *testing.T) {
	const (
		hf = `{"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 16}`
		dm = `{"model_type": "densemamba", "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 16, "dense": {"m": 2,
			"projection": "identity", "gate": "silu-mlp", "gate_ratio": 4, "fusion": "add", "norm": "rmsnorm"}}`
		orig  = `{"d_model": 8, "n_layer": 2, "vocab_size": 10, "pad_vocab_size_multiple": 8, "ssm_cfg": {}}`
		wideD = `{"model_type": "mamba", "hidden_size": 1048576, "num_hidden_layers": 1, "vocab_size": 16}`
	)
	modeltest.CheckFieldDomains(t,
		modeltest.Domain(NameMamba, hf, "vocab_size", "0", "-1", "2147483648", "1e3"),
		modeltest.Domain(NameMamba, hf, "hidden_size", "0", "-8", "1048577", "9223372036854775807", `"8"`),
		modeltest.Domain(NameMamba, hf, "num_hidden_layers", "0", "65537"),
		modeltest.Domain(NameMamba, hf, "state_size", "0", "65537"),
		modeltest.Domain(NameMamba, hf, "conv_kernel", "0", "-4", "1025"),
		modeltest.Domain(NameMamba, hf, "expand", "0", "-2", "1025"),
		modeltest.Domain(NameMamba, wideD, "expand", "8"), // expand*hidden_size > 2^22
		modeltest.Domain(NameMamba, hf, "intermediate_size", "0", "7", "-16"),
		modeltest.Domain(NameMamba, hf, "time_step_rank", "0", "-1", "1048577", `"big"`),
		modeltest.Domain(NameMamba, hf, "layer_norm_epsilon", "0", "-1e-5", "2", "1e-50", "1e999"),
		modeltest.Domain(NameMamba, hf, "pad_vocab_size_multiple", "-8", "1048577"),
		modeltest.Domain(NameMamba, hf, "time_step_min", "-5", "0", "1e-60", "1e39", "1e999"),
		modeltest.Domain(NameMamba, hf, "time_step_max", "0.0001", "-1", "1e39"),
		modeltest.Domain(NameMamba, hf, "time_step_floor", "-1e-4", "1e39"),
		modeltest.Domain(NameMamba, hf, "time_step_scale", "0", "-1", "1e39"),
		modeltest.Domain(NameMamba, hf, "hidden_act", `"relu"`, `"gelu"`),
		modeltest.Domain(NameMamba, hf, "model_type", `"bogus"`),
		modeltest.Domain(NameMamba, hf, "dense", `{"m": 1}`).Naming("dense.m"),
		modeltest.Domain(NameMamba, hf, "dense_target", `"y"`),
		modeltest.Domain(NameMamba, hf, "initializer_range", "-0.1", `"x"`),
		modeltest.Domain(NameMamba, hf, "dropout", "1", "-0.5"),
		modeltest.Domain(NameDenseMamba, dm, "dense.m", "-1", "65537"),
		modeltest.Domain(NameDenseMamba, dm, "dense.projection", `"conv"`),
		modeltest.Domain(NameDenseMamba, dm, "dense.gate", `"sigmoid"`),
		modeltest.Domain(NameDenseMamba, dm, "dense.gate_ratio", "-1", "0", "1048577"),
		modeltest.Domain(NameDenseMamba, dm, "dense.fusion", `"mul"`),
		modeltest.Domain(NameDenseMamba, dm, "dense.norm", `"layernorm"`),
		modeltest.Domain(NameDenseMamba, dm, "dense_target", `"y"`, `"h"`), // h with the default rmsnorm
		// The state-spaces form names its own fields.
		modeltest.Domain(NameMamba, orig, "d_model", "0", "1048577"),
		modeltest.Domain(NameMamba, orig, "n_layer", "0", "-1"),
		modeltest.Domain(NameMamba, orig, "vocab_size", "0", "2147483647"), // the second overflows when padded
		modeltest.Domain(NameMamba, orig, "pad_vocab_size_multiple", "0", "-8", "1048577"),
		modeltest.Domain(NameMamba, orig, "norm_epsilon", "0", "-1", "3"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.d_state", "0", "-16"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.d_conv", "0", "2000"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.expand", "0", "-2"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.dt_rank", "0", "-3", `"many"`),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.dt_min", "-5", "0"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.dt_max", "0.0001", "-1"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.dt_init_floor", "-1"),
		modeltest.Domain(NameMamba, orig, "ssm_cfg.dt_scale", "0", "-2"),
	)
	// The example of the issue: the error names the first field.
	_, err := ParseConfig(NameMamba, []byte(`{"hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 8,
		"time_step_min": -5, "time_step_max": -1}`))
	if err == nil || !strings.Contains(err.Error(), "mamba config: time_step_min = -5: must be > 0") {
		t.Errorf("time_step_min -5: %v", err)
	}
}

// TestValidateNonFinite checks the values JSON cannot hold but Go callers
// can set: NaN and infinities.
func TestValidateNonFinite(t *testing.T) {
	for field, set := range map[string]func(*Config, float64){
		"layer_norm_epsilon": func(c *Config, v float64) { c.LayerNormEpsilon = api.ConfigFloat(v) },
		"time_step_min":      func(c *Config, v float64) { c.TimeStepMin = api.ConfigFloat(v) },
		"time_step_max":      func(c *Config, v float64) { c.TimeStepMax = api.ConfigFloat(v) },
		"time_step_floor":    func(c *Config, v float64) { c.TimeStepFloor = api.ConfigFloat(v) },
		"time_step_scale":    func(c *Config, v float64) { c.TimeStepScale = api.ConfigFloat(v) },
	} {
		for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			c := DefaultConfig(NameMamba)
			set(c, v)
			err := c.Validate()
			if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), field) {
				t.Errorf("%s = %v: %v", field, v, err)
			}
		}
	}
}

// TestCommittedConfigsValidate checks that the defaults and every
// committed config.json of a Mamba model still parse.
func TestCommittedConfigsValidate(t *testing.T) {
	modeltest.CheckCommittedConfigs(t, []string{NameMamba, NameDenseMamba}, "mamba*.json", func(string) string { return NameMamba })
}

// TestRandomConfigsInitFinite draws small valid configurations, time steps
// and epsilons from across their domains, and checks that a freshly
// initialised model has only finite parameters.
func TestRandomConfigsInitFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	b := cpu.New(api.BackendOptions{Threads: 1})
	logUniform := func(lo, hi float64) float64 {
		return math.Exp(math.Log(lo) + (math.Log(hi)-math.Log(lo))*r.Float64())
	}
	gates := []string{dense.GateSiluMLP, dense.GateLinear, dense.GateNone}
	for i := range 40 {
		c := DefaultConfig([]string{NameMamba, NameDenseMamba}[i%2])
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers = 1+r.IntN(40), 1+r.IntN(24), 1+r.IntN(3)
		c.StateSize, c.ConvKernel, c.Expand = 1+r.IntN(8), 1+r.IntN(5), 1+r.IntN(3)
		c.IntermediateSize, c.TimeStepRank = c.Expand*c.HiddenSize, 1+r.IntN(6)
		c.UseBias, c.UseConvBias, c.TieWordEmbeddings = r.IntN(2) == 0, r.IntN(2) == 0, r.IntN(2) == 0
		c.LayerNormEpsilon = api.ConfigFloat(logUniform(1e-30, 1))
		c.TimeStepMin = api.ConfigFloat(logUniform(1e-30, 1e3))
		c.TimeStepMax = c.TimeStepMin * api.ConfigFloat(logUniform(1, 1e30))
		c.TimeStepFloor = api.ConfigFloat([]float64{0, 1e-4, logUniform(1e-30, 1e30)}[r.IntN(3)])
		c.TimeStepScale = api.ConfigFloat(logUniform(1e-10, 1e10))
		if c.ModelType == NameDenseMamba {
			c.Dense.M, c.Dense.GateRatio, c.Dense.Gate = r.IntN(4), 1+r.IntN(40), gates[r.IntN(3)]
			if c.DenseTarget = TargetX; r.IntN(2) == 0 {
				c.DenseTarget, c.Dense.Norm = TargetH, dense.NormNone
			}
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		m, err := New(c, b, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		modeltest.CheckFiniteParameters(t, c.ModelType, m)
	}
}
