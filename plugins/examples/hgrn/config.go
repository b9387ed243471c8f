package hgrn

import (
	"encoding/json"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/cfgcheck"
)

// Name is the registered name of the architecture and the model_type of
// its config.json.
const Name = "hgrn"

// Config holds the hyper-parameters of an HGRN model; it is the
// config.json the toolkit writes next to the weights.
type Config struct {
	ModelType        string `json:"model_type"` // always Name
	VocabSize        int    `json:"vocab_size"`
	HiddenSize       int    `json:"hidden_size"`       // D, the width of the residual stream and of the recurrent state
	NumHiddenLayers  int    `json:"num_hidden_layers"` // L
	IntermediateSize int    `json:"intermediate_size"` // I, the width of the SwiGLU MLP
	// LowerBoundMax is the forget-gate lower bound λ that the layers rise
	// towards: layer l's bound is (l / L) · LowerBoundMax.
	LowerBoundMax api.ConfigFloat `json:"lower_bound_max"`
	// DenseM is the number m of shallower layers whose states each layer
	// reads through the dense hidden link; 0 turns the link off.
	DenseM            int             `json:"dense_m"`
	RMSNormEps        api.ConfigFloat `json:"rms_norm_eps"`
	TieWordEmbeddings bool            `json:"tie_word_embeddings"`
}

var _ api.Config = (*Config)(nil)

// ArchName returns the registered architecture name.
func (c *Config) ArchName() string { return c.ModelType }

// Vocab returns the number of logits per token.
func (c *Config) Vocab() int { return c.VocabSize }

// LowerBound returns the forget-gate lower bound λ_l = (l / L) ·
// lower_bound_max of layer l.
func (c *Config) LowerBound(l int) float64 {
	return float64(l) / float64(c.NumHiddenLayers) * float64(c.LowerBoundMax)
}

// DefaultConfig returns a small HGRN (4 layers of width 128, a dense link
// to the 2 layers below, the GPT-NeoX vocabulary padded to 50280) for tests
// and training from scratch.
func DefaultConfig() *Config {
	return &Config{
		ModelType: Name, VocabSize: 50280, HiddenSize: 128, NumHiddenLayers: 4,
		IntermediateSize: 256, LowerBoundMax: 0.9, DenseM: 2, RMSNormEps: 1e-5,
		TieWordEmbeddings: true,
	}
}

// Validate checks every field against its domain. The error names the
// first field outside it, as config.json spells it, and wraps
// api.ErrConfig. The domains:
//
//	model_type           hgrn
//	vocab_size           1 .. 2^31-1 (token ids are int32)
//	hidden_size          1 .. 2^20
//	num_hidden_layers    1 .. 2^16
//	intermediate_size    1 .. 2^22
//	lower_bound_max      [0, 1)
//	dense_m              0 .. 2^16 (links to layers that do not exist are absent)
//	rms_norm_eps         (0, 1], not 0 as a float32
func (c *Config) Validate() error {
	k := cfgcheck.New("hgrn config")
	k.OneOf("model_type", c.ModelType, Name)
	k.Int("vocab_size", c.VocabSize, 1, cfgcheck.MaxVocab)
	k.Int("hidden_size", c.HiddenSize, 1, cfgcheck.MaxModel)
	k.Int("num_hidden_layers", c.NumHiddenLayers, 1, cfgcheck.MaxLayers)
	k.Int("intermediate_size", c.IntermediateSize, 1, cfgcheck.MaxInner)
	k.Fraction("lower_bound_max", float64(c.LowerBoundMax))
	k.Int("dense_m", c.DenseM, 0, cfgcheck.MaxLayers)
	k.Epsilon("rms_norm_eps", float64(c.RMSNormEps))
	return k.Err()
}

// ParseConfig reads a config.json of the toolkit's form (the fields of
// Config). Absent fields take DefaultConfig's values, an absent model_type
// reads as "hgrn", and fields the model does not know are ignored, as the
// built-in architectures ignore them; a field that is present must be in
// its domain (see Validate), as must initializer_range and the dropout
// rates, which change nothing here. Errors wrap api.ErrConfig.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("hgrn config: %v: %w", err, api.ErrConfig)
	}
	c := DefaultConfig()
	c.ModelType = ""
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("hgrn config: %v: %w", err, api.ErrConfig)
	}
	if c.ModelType == "" {
		c.ModelType = Name
	}
	if c.ModelType != Name {
		return nil, fmt.Errorf("hgrn config: model_type %q read as %q: %w", c.ModelType, Name, api.ErrConfig)
	}
	k := cfgcheck.New("hgrn config")
	k.Unused(raw)
	if err := k.Err(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
