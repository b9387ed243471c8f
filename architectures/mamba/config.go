package mamba

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
)

// The two registered names.
const (
	NameMamba      = "mamba"
	NameDenseMamba = "densemamba"
)

// Dense link targets of DenseMamba (specs/models.md §4).
const (
	TargetX = "x" // the SSM input x' after the conv and silu (default)
	TargetH = "h" // the per-token SSM state
)

// Config holds Mamba's hyper-parameters under Hugging Face's MambaConfig
// names, plus the DenseMamba knobs. It is the config.json the toolkit
// writes: for plain Mamba, transformers' MambaForCausalLM reads it as is.
type Config struct {
	ModelType         string          `json:"model_type"` // NameMamba or NameDenseMamba
	VocabSize         int             `json:"vocab_size"` // rows of the embedding (already padded)
	HiddenSize        int             `json:"hidden_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	StateSize         int             `json:"state_size"`
	ConvKernel        int             `json:"conv_kernel"`
	Expand            int             `json:"expand"`
	IntermediateSize  int             `json:"intermediate_size"`
	TimeStepRank      int             `json:"time_step_rank"`
	LayerNormEpsilon  api.ConfigFloat `json:"layer_norm_epsilon"`
	UseBias           bool            `json:"use_bias"`
	UseConvBias       bool            `json:"use_conv_bias"`
	TieWordEmbeddings bool            `json:"tie_word_embeddings"`
	// PadVocabSizeMultiple is kept for the record; VocabSize is already a
	// multiple of it when the config came from the original repositories.
	PadVocabSizeMultiple int `json:"pad_vocab_size_multiple"`
	// Initialisation of the time step (used when training from scratch).
	TimeStepMin   api.ConfigFloat `json:"time_step_min"`
	TimeStepMax   api.ConfigFloat `json:"time_step_max"`
	TimeStepFloor api.ConfigFloat `json:"time_step_floor"`
	TimeStepScale api.ConfigFloat `json:"time_step_scale"`
	HiddenAct     string          `json:"hidden_act"`

	// Dense holds the DenseMamba knobs; Dense.M == 0 is plain Mamba.
	Dense dense.Config `json:"dense,omitzero"`
	// DenseTarget is TargetX or TargetH.
	DenseTarget string `json:"dense_target,omitempty"`
}

var _ api.Config = (*Config)(nil)

// ArchName returns the registered architecture name.
func (c *Config) ArchName() string { return c.ModelType }

// Vocab returns the number of logits per token.
func (c *Config) Vocab() int { return c.VocabSize }

// Inner returns d_inner, the width E of the mixer.
func (c *Config) Inner() int { return c.IntermediateSize }

// Validate checks the sizes and the dense knobs.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("mamba config: %s: %w", fmt.Sprintf(format, args...), api.ErrConfig)
	}
	switch {
	case c.ModelType != NameMamba && c.ModelType != NameDenseMamba:
		return bad("model_type %q", c.ModelType)
	case c.VocabSize < 1, c.HiddenSize < 1, c.NumHiddenLayers < 1, c.StateSize < 1,
		c.ConvKernel < 1, c.IntermediateSize < 1, c.TimeStepRank < 1:
		return bad("sizes must be positive (vocab %d, hidden %d, layers %d, state %d, conv %d, inner %d, dt rank %d)",
			c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.StateSize, c.ConvKernel, c.IntermediateSize, c.TimeStepRank)
	case !(c.LayerNormEpsilon > 0):
		return bad("layer_norm_epsilon %g", c.LayerNormEpsilon)
	case c.IntermediateSize != c.Expand*c.HiddenSize:
		return bad("intermediate_size %d is not expand*hidden_size = %d (transformers derives it)", c.IntermediateSize, c.Expand*c.HiddenSize)
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return bad("hidden_act %q (only silu)", c.HiddenAct)
	case c.ModelType == NameMamba && c.Dense.M != 0:
		return bad("plain mamba with dense.m = %d (use model_type densemamba)", c.Dense.M)
	}
	if err := c.Dense.Validate(); err != nil {
		return fmt.Errorf("mamba config: %w", err)
	}
	if c.ModelType == NameDenseMamba {
		switch c.DenseTarget {
		case TargetX:
		case TargetH:
			if c.Dense.M > 0 && (c.Dense.Projection != dense.ProjIdentity || c.Dense.Fusion != dense.FuseAdd || c.Dense.Norm != dense.NormNone) {
				return bad("dense target h needs projection identity, fusion add and norm none (the state recurrence must stay linear)")
			}
		default:
			return bad("dense_target %q (want x or h)", c.DenseTarget)
		}
	}
	return nil
}

// DefaultConfig returns a small Mamba (4 layers, width 128, GPT-NeoX-sized
// vocabulary padded to 50280) for tests and training from scratch.
func DefaultConfig(arch string) *Config {
	c := &Config{
		ModelType: arch, VocabSize: 50280, HiddenSize: 128, NumHiddenLayers: 4,
		StateSize: 16, ConvKernel: 4, Expand: 2, LayerNormEpsilon: 1e-5,
		UseConvBias: true, TieWordEmbeddings: true, PadVocabSizeMultiple: 8,
		TimeStepMin: 1e-3, TimeStepMax: 0.1, TimeStepFloor: 1e-4, TimeStepScale: 1, HiddenAct: "silu",
	}
	c.fillDerived()
	if arch == NameDenseMamba {
		c.Dense = dense.Defaults(2)
		c.DenseTarget = TargetX
	}
	return c
}

// fillDerived sets intermediate_size and time_step_rank from the other
// fields where they are unset, as transformers does ("auto" rank).
func (c *Config) fillDerived() {
	if c.IntermediateSize == 0 {
		c.IntermediateSize = c.Expand * c.HiddenSize
	}
	if c.TimeStepRank == 0 {
		c.TimeStepRank = int(math.Ceil(float64(c.HiddenSize) / 16))
	}
}

// ParseConfig reads a config.json in one of three forms:
//   - Hugging Face's MambaConfig (hidden_size, num_hidden_layers, state_size,
//     ...; "time_step_rank" may be "auto"), as the "-hf" repositories and
//     save_pretrained write it;
//   - the original state-spaces form (d_model, n_layer, vocab_size, ssm_cfg,
//     pad_vocab_size_multiple), whose vocabulary is padded up to a multiple
//     of pad_vocab_size_multiple as MambaLMHeadModel does;
//   - the toolkit's own, which is the Hugging Face form plus the dense knobs.
//
// arch ("mamba" or "densemamba") is the architecture asking; a config whose
// model_type names the other one is refused.
func ParseConfig(arch string, data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("mamba config: %v: %w", err, api.ErrConfig)
	}
	c := DefaultConfig(arch)
	c.Dense, c.DenseTarget = dense.Config{}, ""
	c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.TimeStepRank = 0, 0, 0, 0
	if _, original := raw["d_model"]; original {
		if err := c.parseOriginal(raw); err != nil {
			return nil, err
		}
	} else {
		if r, ok := raw["time_step_rank"]; ok && string(r) == `"auto"` {
			delete(raw, "time_step_rank")
		}
		fixed, _ := json.Marshal(raw)
		if err := json.Unmarshal(fixed, c); err != nil {
			return nil, fmt.Errorf("mamba config: %v: %w", err, api.ErrConfig)
		}
	}
	if c.ModelType == "" {
		c.ModelType = arch
	}
	if c.ModelType != arch {
		return nil, fmt.Errorf("mamba config: model_type %q read as %q: %w", c.ModelType, arch, api.ErrConfig)
	}
	if arch == NameDenseMamba {
		if _, set := raw["dense"]; !set {
			c.Dense = dense.Defaults(2)
		}
		if c.DenseTarget == "" {
			c.DenseTarget = TargetX
		}
	}
	c.fillDerived()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseOriginal reads the state-spaces MambaConfig fields.
func (c *Config) parseOriginal(raw map[string]json.RawMessage) error {
	var o struct {
		DModel               int     `json:"d_model"`
		NLayer               int     `json:"n_layer"`
		VocabSize            int     `json:"vocab_size"`
		PadVocabSizeMultiple int     `json:"pad_vocab_size_multiple"`
		TieEmbeddings        *bool   `json:"tie_embeddings"`
		NormEpsilon          float64 `json:"norm_epsilon"`
		RMSNorm              *bool   `json:"rms_norm"`
		SSMCfg               struct {
			Layer    string          `json:"layer"`
			DState   int             `json:"d_state"`
			DConv    int             `json:"d_conv"`
			Expand   int             `json:"expand"`
			DtRank   json.RawMessage `json:"dt_rank"`
			Bias     bool            `json:"bias"`
			ConvBias *bool           `json:"conv_bias"`
			DtMin    float64         `json:"dt_min"`
			DtMax    float64         `json:"dt_max"`
			DtFloor  float64         `json:"dt_init_floor"`
			DtScale  float64         `json:"dt_scale"`
		} `json:"ssm_cfg"`
	}
	whole, _ := json.Marshal(raw)
	if err := json.Unmarshal(whole, &o); err != nil {
		return fmt.Errorf("mamba config (state-spaces form): %v: %w", err, api.ErrConfig)
	}
	if o.SSMCfg.Layer != "" && o.SSMCfg.Layer != "Mamba1" {
		return fmt.Errorf("mamba config: ssm_cfg.layer %q (only Mamba1): %w", o.SSMCfg.Layer, api.ErrUnsupported)
	}
	if o.RMSNorm != nil && !*o.RMSNorm {
		return fmt.Errorf("mamba config: rms_norm false (LayerNorm blocks): %w", api.ErrUnsupported)
	}
	c.HiddenSize, c.NumHiddenLayers = o.DModel, o.NLayer
	c.VocabSize = o.VocabSize
	if m := o.PadVocabSizeMultiple; m > 0 {
		c.PadVocabSizeMultiple = m
		c.VocabSize = (c.VocabSize + m - 1) / m * m
	}
	if o.TieEmbeddings != nil {
		c.TieWordEmbeddings = *o.TieEmbeddings
	}
	if o.NormEpsilon > 0 {
		c.LayerNormEpsilon = api.ConfigFloat(o.NormEpsilon)
	}
	s := o.SSMCfg
	setIf := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	setIf(&c.StateSize, s.DState)
	setIf(&c.ConvKernel, s.DConv)
	setIf(&c.Expand, s.Expand)
	if len(s.DtRank) > 0 && string(s.DtRank) != `"auto"` {
		if err := json.Unmarshal(s.DtRank, &c.TimeStepRank); err != nil {
			return fmt.Errorf("mamba config: ssm_cfg.dt_rank %s: %w", s.DtRank, api.ErrConfig)
		}
	}
	c.UseBias = s.Bias
	if s.ConvBias != nil {
		c.UseConvBias = *s.ConvBias
	}
	for _, p := range []struct {
		dst *api.ConfigFloat
		v   float64
	}{{&c.TimeStepMin, s.DtMin}, {&c.TimeStepMax, s.DtMax}, {&c.TimeStepFloor, s.DtFloor}, {&c.TimeStepScale, s.DtScale}} {
		if p.v > 0 {
			*p.dst = api.ConfigFloat(p.v)
		}
	}
	return nil
}
