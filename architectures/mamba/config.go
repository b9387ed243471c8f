package mamba

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/cfgcheck"
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

// Bounds of the Mamba sizes that cfgcheck does not share.
const (
	maxStateSize  = 1 << 16 // state_size N
	maxConvKernel = 1 << 10 // conv_kernel K
	maxExpand     = 1 << 10 // expand
)

// Validate checks every field against its domain and the fields against
// one another. The error names the first field outside its domain, as
// config.json spells it, and wraps api.ErrConfig. The domains:
//
//	model_type                  mamba or densemamba
//	vocab_size                  1 .. 2^31-1 (token ids are int32)
//	hidden_size                 1 .. 2^20
//	num_hidden_layers           1 .. 2^16
//	state_size                  1 .. 2^16
//	conv_kernel                 1 .. 1024
//	expand                      1 .. 1024, and expand*hidden_size <= 2^22
//	intermediate_size           expand*hidden_size
//	time_step_rank              1 .. 2^20
//	layer_norm_epsilon          (0, 1], not 0 as a float32
//	pad_vocab_size_multiple     0 .. 2^20 (kept for the record)
//	time_step_min               > 0
//	time_step_max               >= time_step_min
//	time_step_floor             >= 0
//	time_step_scale             > 0
//	hidden_act                  silu (or empty)
//	dense                       see dense.Config.Validate; m = 0 for mamba
//	dense_target                x or h for densemamba (h with identity
//	                            projection, add fusion and no norm);
//	                            empty, x or h for mamba
//
// The time-step values must also be finite as float32, the type of the
// parameters they initialise.
func (c *Config) Validate() error {
	k := cfgcheck.New("mamba config")
	k.OneOf("model_type", c.ModelType, NameMamba, NameDenseMamba)
	k.Int("vocab_size", c.VocabSize, 1, cfgcheck.MaxVocab)
	k.Int("hidden_size", c.HiddenSize, 1, cfgcheck.MaxModel)
	k.Int("num_hidden_layers", c.NumHiddenLayers, 1, cfgcheck.MaxLayers)
	k.Int("state_size", c.StateSize, 1, maxStateSize)
	k.Int("conv_kernel", c.ConvKernel, 1, maxConvKernel)
	k.Int("expand", c.Expand, 1, maxExpand)
	if k.OK() && c.Expand*c.HiddenSize > cfgcheck.MaxInner {
		k.Fail("expand", c.Expand, "expand*hidden_size = %d must be <= %d", c.Expand*c.HiddenSize, cfgcheck.MaxInner)
	}
	if k.OK() && c.IntermediateSize != c.Expand*c.HiddenSize {
		k.Fail("intermediate_size", c.IntermediateSize, "must be expand*hidden_size = %d (transformers derives it)", c.Expand*c.HiddenSize)
	}
	k.Int("time_step_rank", c.TimeStepRank, 1, cfgcheck.MaxModel)
	k.Epsilon("layer_norm_epsilon", float64(c.LayerNormEpsilon))
	k.Int("pad_vocab_size_multiple", c.PadVocabSizeMultiple, 0, cfgcheck.MaxModel)
	k.Float("time_step_min", float64(c.TimeStepMin), 0, math.MaxFloat32, true)
	k.Float("time_step_max", float64(c.TimeStepMax), 0, math.MaxFloat32, true)
	if k.OK() && c.TimeStepMax < c.TimeStepMin {
		k.Fail("time_step_max", c.TimeStepMax, "must be >= time_step_min = %g", float64(c.TimeStepMin))
	}
	k.Float("time_step_floor", float64(c.TimeStepFloor), 0, math.MaxFloat32, false)
	k.Float("time_step_scale", float64(c.TimeStepScale), 0, math.MaxFloat32, true)
	k.OneOf("hidden_act", c.HiddenAct, "silu", "")
	if err := k.Err(); err != nil {
		return err
	}
	if c.ModelType == NameMamba && c.Dense.M != 0 {
		k.Fail("dense.m", c.Dense.M, "must be 0 for model_type mamba (use densemamba)")
		return k.Err()
	}
	if err := c.Dense.Validate(); err != nil {
		return cfgcheck.Rename(err, "mamba config", func(f string) string { return "dense." + f })
	}
	if c.ModelType == NameMamba {
		k.OneOf("dense_target", c.DenseTarget, "", TargetX, TargetH)
		return k.Err()
	}
	k.OneOf("dense_target", c.DenseTarget, TargetX, TargetH)
	if k.OK() && c.DenseTarget == TargetH && c.Dense.M > 0 &&
		(c.Dense.Projection != dense.ProjIdentity || c.Dense.Fusion != dense.FuseAdd || c.Dense.Norm != dense.NormNone) {
		k.Fail("dense_target", c.DenseTarget, "needs dense projection identity, fusion add and norm none (the state recurrence must stay linear)")
	}
	return k.Err()
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
	c.fillDerived(true, true)
	if arch == NameDenseMamba {
		c.Dense = dense.Defaults(2)
		c.DenseTarget = TargetX
	}
	return c
}

// fillDerived sets intermediate_size (inner) and time_step_rank (rank)
// from the other fields, as transformers does ("auto" rank). The products
// are left at 0 when their factors are outside their domains, for Validate
// to report those.
func (c *Config) fillDerived(inner, rank bool) {
	if inner {
		c.IntermediateSize = 0
		if c.Expand >= 1 && c.Expand <= maxExpand && c.HiddenSize >= 1 && c.HiddenSize <= cfgcheck.MaxModel {
			c.IntermediateSize = c.Expand * c.HiddenSize
		}
	}
	if rank {
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
// model_type names the other one is refused. Absent fields take
// DefaultConfig's values, and intermediate_size and time_step_rank are
// derived from the others when absent; a field that is present must be in
// its domain (see Validate), and an error names it as the file does
// ("ssm_cfg.dt_min" in the state-spaces form). initializer_range and the
// dropout rates, which change nothing here, must be in their domains too.
func ParseConfig(arch string, data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("mamba config: %v: %w", err, api.ErrConfig)
	}
	c := DefaultConfig(arch)
	c.Dense, c.DenseTarget = dense.Config{}, ""
	c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.TimeStepRank = 0, 0, 0, 0
	var names map[string]string // Validate's field names as this form spells them
	if _, original := raw["d_model"]; original {
		if err := c.parseOriginal(data); err != nil {
			return nil, err
		}
		names = originalNames
	} else {
		text, autoRank := data, false
		if r, ok := raw["time_step_rank"]; ok && string(r) == `"auto"` {
			// An int cannot hold "auto": decode the other fields.
			delete(raw, "time_step_rank")
			text, _ = json.Marshal(raw)
			autoRank = true
		}
		if err := json.Unmarshal(text, c); err != nil {
			return nil, fmt.Errorf("mamba config: %v: %w", err, api.ErrConfig)
		}
		// Derive only what the file leaves out: an explicit 0 is an error.
		_, inner := raw["intermediate_size"]
		_, rank := raw["time_step_rank"]
		c.fillDerived(!inner, autoRank || !rank)
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
	k := cfgcheck.New("mamba config")
	k.Unused(raw)
	if err := k.Err(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, cfgcheck.RenameMap(err, "", names)
	}
	return c, nil
}

// originalNames maps the fields Validate names to the state-spaces
// config's.
var originalNames = map[string]string{
	"hidden_size":         "d_model",
	"num_hidden_layers":   "n_layer",
	"tie_word_embeddings": "tie_embeddings",
	"layer_norm_epsilon":  "norm_epsilon",
	"state_size":          "ssm_cfg.d_state",
	"conv_kernel":         "ssm_cfg.d_conv",
	"expand":              "ssm_cfg.expand",
	"time_step_rank":      "ssm_cfg.dt_rank",
	"time_step_min":       "ssm_cfg.dt_min",
	"time_step_max":       "ssm_cfg.dt_max",
	"time_step_floor":     "ssm_cfg.dt_init_floor",
	"time_step_scale":     "ssm_cfg.dt_scale",
}

// parseOriginal reads the state-spaces MambaConfig fields of the
// config.json data. Absent fields keep their defaults; present ones are
// taken as they are, for Validate to check.
func (c *Config) parseOriginal(data []byte) error {
	var o struct {
		DModel               int      `json:"d_model"`
		NLayer               int      `json:"n_layer"`
		VocabSize            int      `json:"vocab_size"`
		PadVocabSizeMultiple *int     `json:"pad_vocab_size_multiple"`
		TieEmbeddings        *bool    `json:"tie_embeddings"`
		NormEpsilon          *float64 `json:"norm_epsilon"`
		RMSNorm              *bool    `json:"rms_norm"`
		SSMCfg               struct {
			Layer    string          `json:"layer"`
			DState   *int            `json:"d_state"`
			DConv    *int            `json:"d_conv"`
			Expand   *int            `json:"expand"`
			DtRank   json.RawMessage `json:"dt_rank"`
			Bias     bool            `json:"bias"`
			ConvBias *bool           `json:"conv_bias"`
			DtMin    *float64        `json:"dt_min"`
			DtMax    *float64        `json:"dt_max"`
			DtFloor  *float64        `json:"dt_init_floor"`
			DtScale  *float64        `json:"dt_scale"`
		} `json:"ssm_cfg"`
	}
	if err := json.Unmarshal(data, &o); err != nil {
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
	if o.PadVocabSizeMultiple != nil {
		k := cfgcheck.New("mamba config")
		m := *o.PadVocabSizeMultiple
		k.Int("pad_vocab_size_multiple", m, 1, cfgcheck.MaxModel)
		k.Int("vocab_size", c.VocabSize, 1, cfgcheck.MaxVocab)
		if k.OK() {
			padded := (c.VocabSize + m - 1) / m * m
			if padded > cfgcheck.MaxVocab {
				k.Fail("vocab_size", c.VocabSize, "padded to a multiple of pad_vocab_size_multiple = %d it is %d, must be <= %d", m, padded, cfgcheck.MaxVocab)
			}
			c.PadVocabSizeMultiple, c.VocabSize = m, padded
		}
		if err := k.Err(); err != nil {
			return err
		}
	}
	if o.TieEmbeddings != nil {
		c.TieWordEmbeddings = *o.TieEmbeddings
	}
	if o.NormEpsilon != nil {
		c.LayerNormEpsilon = api.ConfigFloat(*o.NormEpsilon)
	}
	s := o.SSMCfg
	for _, p := range []struct {
		dst *int
		v   *int
	}{{&c.StateSize, s.DState}, {&c.ConvKernel, s.DConv}, {&c.Expand, s.Expand}} {
		if p.v != nil {
			*p.dst = *p.v
		}
	}
	autoRank := len(s.DtRank) == 0 || string(s.DtRank) == `"auto"`
	if !autoRank {
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
		v   *float64
	}{{&c.TimeStepMin, s.DtMin}, {&c.TimeStepMax, s.DtMax}, {&c.TimeStepFloor, s.DtFloor}, {&c.TimeStepScale, s.DtScale}} {
		if p.v != nil {
			*p.dst = api.ConfigFloat(*p.v)
		}
	}
	c.fillDerived(true, autoRank)
	return nil
}
