package retnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
)

// The two registered names.
const (
	NameRetNet      = "retnet"
	NameDenseRetNet = "denseretnet"
)

// Config holds the hyper-parameters of both architectures. It is the
// config.json the toolkit writes (with model_type the registered name);
// ParseConfig also reads torchscale's RetNetConfig and the official DenseSSM
// config.
//
// Shapes: d = HiddenSize, H = NumAttentionHeads, each head has dk =
// QueryKeyDim/H query/key features (even, for the rotation) and dv =
// ValueDim/H value features.
type Config struct {
	ModelType         string `json:"model_type"` // NameRetNet or NameDenseRetNet
	VocabSize         int    `json:"vocab_size"`
	HiddenSize        int    `json:"hidden_size"`
	NumHiddenLayers   int    `json:"num_hidden_layers"`
	NumAttentionHeads int    `json:"num_attention_heads"`
	// QueryKeyDim is the total width of q and k: d for RetNet (torchscale
	// has no other choice), d_qk for DenseRetNet.
	QueryKeyDim int `json:"query_key_dim"`
	// ValueDim is the total width of v and of the output gate: RetNet's
	// decoder_value_embed_dim, DenseRetNet's e = v_factor * d.
	ValueDim int `json:"value_dim"`
	// FFNDim is the hidden width of RetNet's SwiGLU FFN; DenseRetNet has no
	// FFN (0).
	FFNDim     int             `json:"ffn_dim,omitempty"`
	RMSNormEps api.ConfigFloat `json:"rms_norm_eps"`
	// ScaleEmbedding multiplies the embeddings by sqrt(d) (torchscale
	// unless no_scale_embedding).
	ScaleEmbedding bool `json:"scale_embedding"`
	// TieWordEmbeddings makes the output projection the embedding table.
	TieWordEmbeddings bool `json:"tie_word_embeddings"`
	// PadTokenID, when set, is the embedding row that receives no gradient
	// and starts at zero (PyTorch's nn.Embedding padding_idx, which the
	// official DenseSSM code sets from pad_token_id).
	PadTokenID *int `json:"pad_token_id,omitempty"`

	// Dense holds DenseRetNet's knobs for the links into k and v: M is the
	// official dense_block_layers (0 is the plain GAU RetNet), and
	// Dense.GateRatio is the key selector's bottleneck ratio r_k (the
	// published checkpoints' intermediate_k_select_scale). RetNet has none.
	Dense dense.Config `json:"dense,omitzero"`
	// DenseVGateRatio is the value selector's bottleneck ratio r_v
	// (intermediate_v_select_scale).
	DenseVGateRatio int `json:"dense_v_gate_ratio,omitempty"`
}

var _ api.Config = (*Config)(nil)

// ArchName returns the registered architecture name.
func (c *Config) ArchName() string { return c.ModelType }

// Vocab returns the number of logits per token.
func (c *Config) Vocab() int { return c.VocabSize }

// KeyHeadDim returns dk, the query/key width of one head.
func (c *Config) KeyHeadDim() int { return c.QueryKeyDim / c.NumAttentionHeads }

// ValueHeadDim returns dv, the value width of one head.
func (c *Config) ValueHeadDim() int { return c.ValueDim / c.NumAttentionHeads }

// gau reports whether the layers are DenseRetNet's gated retention units.
func (c *Config) gau() bool { return c.ModelType == NameDenseRetNet }

// linkConfigs returns the dense.Config of the key and the value link.
func (c *Config) linkConfigs() (k, v dense.Config) {
	k, v = c.Dense, c.Dense
	v.GateRatio = c.DenseVGateRatio
	return k, v
}

// Validate checks the sizes and, for DenseRetNet, the dense knobs.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("retnet config: %s: %w", fmt.Sprintf(format, args...), api.ErrConfig)
	}
	switch {
	case c.ModelType != NameRetNet && c.ModelType != NameDenseRetNet:
		return bad("model_type %q", c.ModelType)
	case c.VocabSize < 1, c.HiddenSize < 1, c.NumHiddenLayers < 1, c.NumAttentionHeads < 1,
		c.QueryKeyDim < 1, c.ValueDim < 1:
		return bad("sizes must be positive (vocab %d, hidden %d, layers %d, heads %d, query/key %d, value %d)",
			c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim)
	case c.QueryKeyDim%c.NumAttentionHeads != 0 || c.KeyHeadDim()%2 != 0:
		return bad("query_key_dim %d does not split into %d heads of an even width", c.QueryKeyDim, c.NumAttentionHeads)
	case c.ValueDim%c.NumAttentionHeads != 0:
		return bad("value_dim %d does not split into %d heads", c.ValueDim, c.NumAttentionHeads)
	case !(c.RMSNormEps > 0):
		return bad("rms_norm_eps %g", float64(c.RMSNormEps))
	case c.PadTokenID != nil && (*c.PadTokenID < 0 || *c.PadTokenID >= c.VocabSize):
		return bad("pad_token_id %d outside the vocabulary [0,%d)", *c.PadTokenID, c.VocabSize)
	}
	if !c.gau() {
		switch {
		case c.QueryKeyDim != c.HiddenSize:
			return bad("retnet query_key_dim %d is not hidden_size %d", c.QueryKeyDim, c.HiddenSize)
		case c.FFNDim < 1:
			return bad("retnet ffn_dim %d", c.FFNDim)
		case c.Dense != dense.Config{} || c.DenseVGateRatio != 0:
			return bad("plain retnet with dense knobs (use model_type denseretnet)")
		}
		return nil
	}
	if c.FFNDim != 0 {
		return bad("denseretnet has no FFN (ffn_dim %d)", c.FFNDim)
	}
	// The links exist on every layer whatever M is, so the knobs are
	// checked as for M >= 1.
	k, v := c.linkConfigs()
	for _, lc := range []dense.Config{k, v} {
		lc.M = max(lc.M, 1)
		if err := lc.Validate(); err != nil {
			return fmt.Errorf("retnet config: %w", err)
		}
	}
	if c.Dense.M < 0 {
		return bad("dense.m %d", c.Dense.M)
	}
	if c.Dense.M == 0 && (c.Dense.Projection != dense.ProjIdentity || c.Dense.Fusion != dense.FuseAdd) {
		return bad("dense.m 0 with projection %q and fusion %q (nothing is fused: use identity and add)", c.Dense.Projection, c.Dense.Fusion)
	}
	return nil
}

// DefaultConfig returns a small model of the architecture arch for tests
// and training from scratch: width 128, 4 layers, 2 heads, a 32000-token
// vocabulary; RetNet with value and FFN width 256; DenseRetNet with the
// official proportions (d_qk = d/2, e = 2d) and m = 2.
func DefaultConfig(arch string) *Config {
	c := &Config{
		ModelType: arch, VocabSize: 32000, HiddenSize: 128, NumHiddenLayers: 4, NumAttentionHeads: 2,
		QueryKeyDim: 128, ValueDim: 256, FFNDim: 256, RMSNormEps: 1e-6,
	}
	if arch == NameDenseRetNet {
		c.QueryKeyDim, c.FFNDim = 64, 0
		c.Dense = dense.Defaults(2)
		c.DenseVGateRatio = c.Dense.GateRatio
	}
	return c
}

// ParseConfig reads a config.json in one of three forms:
//   - torchscale's RetNetConfig fields (decoder_embed_dim,
//     decoder_value_embed_dim, ...; "model_type": "retnet"), recognised by
//     its decoder_* fields, read with RetNetConfig's defaults for absent
//     fields; options that change the maths in ways not implemented
//     (deepnorm, post-norm, layernorm_embedding, MoE, multiway, gelu or relu
//     FFN, no output layer) give an error wrapping api.ErrUnsupported;
//   - the official DenseSSM config (hidden_size, query_key_dim, v_factor,
//     dense_block_layers, ...; model_type "llama"), recognised by
//     query_key_dim and v_factor;
//   - the toolkit's own (the fields of Config).
//
// arch ("retnet" or "denseretnet") is the architecture asking; a config of
// the other one is refused.
func ParseConfig(arch string, data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("retnet config: %v: %w", err, api.ErrConfig)
	}
	var (
		c   *Config
		err error
	)
	switch {
	case isTorchscale(raw):
		c, err = parseTorchscale(raw)
	case isOfficialDense(raw):
		c, err = parseOfficial(raw)
	default:
		c, err = parseOwn(arch, raw)
	}
	if err != nil {
		return nil, err
	}
	if c.ModelType != arch {
		return nil, fmt.Errorf("retnet config: a %s config read as %q: %w", c.ModelType, arch, api.ErrConfig)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// isTorchscale reports whether a config has torchscale's decoder_* fields.
func isTorchscale(raw map[string]json.RawMessage) bool {
	for k := range raw {
		if strings.HasPrefix(k, "decoder_") {
			return true
		}
	}
	return false
}

// isOfficialDense reports whether a config has the official DenseSSM
// fields query_key_dim and v_factor.
func isOfficialDense(raw map[string]json.RawMessage) bool {
	_, qk := raw["query_key_dim"]
	_, vf := raw["v_factor"]
	return qk && vf
}

// strictUnmarshal decodes the fields of raw into dst, reporting a value of
// the wrong type as an error wrapping api.ErrConfig.
func strictUnmarshal(form string, raw map[string]json.RawMessage, dst any) error {
	whole, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(whole, dst)
	}
	if err != nil {
		return fmt.Errorf("retnet config (%s form): %v: %w", form, err, api.ErrConfig)
	}
	return nil
}

// parseOwn reads the toolkit's own form. Absent fields take DefaultConfig's
// values, except dense_v_gate_ratio, which defaults to dense.gate_ratio.
func parseOwn(arch string, raw map[string]json.RawMessage) (*Config, error) {
	c := DefaultConfig(arch)
	c.ModelType, c.DenseVGateRatio = "", 0
	if err := strictUnmarshal("toolkit", raw, c); err != nil {
		return nil, err
	}
	if c.ModelType == "" {
		c.ModelType = arch
	}
	if _, set := raw["dense_v_gate_ratio"]; !set && c.ModelType == NameDenseRetNet {
		c.DenseVGateRatio = c.Dense.GateRatio
	}
	return c, nil
}

// torchscaleConfig is torchscale 0.3.0's RetNetConfig, with its defaults
// for absent fields (see newTorchscaleConfig). Fields that change nothing
// in RetNetDecoder's forward pass (subln, xpos_rel_pos, rel_pos_buckets,
// chunkwise_recurrent, dropout rates, ...) are not read.
type torchscaleConfig struct {
	ModelType             string  `json:"model_type"`
	EmbedDim              int     `json:"decoder_embed_dim"`
	ValueEmbedDim         int     `json:"decoder_value_embed_dim"`
	RetentionHeads        int     `json:"decoder_retention_heads"`
	FFNEmbedDim           int     `json:"decoder_ffn_embed_dim"`
	Layers                int     `json:"decoder_layers"`
	NormalizeBefore       bool    `json:"decoder_normalize_before"`
	ActivationFn          string  `json:"activation_fn"`
	NoScaleEmbedding      bool    `json:"no_scale_embedding"`
	LayernormEmbedding    bool    `json:"layernorm_embedding"`
	MoEFreq               int     `json:"moe_freq"`
	Deepnorm              bool    `json:"deepnorm"`
	Subln                 bool    `json:"subln"`
	Multiway              bool    `json:"multiway"`
	ShareInputOutputEmbed bool    `json:"share_decoder_input_output_embed"`
	NoOutputLayer         bool    `json:"no_output_layer"`
	LayernormEps          float64 `json:"layernorm_eps"`
	VocabSize             int     `json:"vocab_size"`
}

// newTorchscaleConfig returns RetNetConfig's defaults.
func newTorchscaleConfig() torchscaleConfig {
	return torchscaleConfig{
		EmbedDim: 768, ValueEmbedDim: 1280, RetentionHeads: 3, FFNEmbedDim: 1280, Layers: 12,
		NormalizeBefore: true, ActivationFn: "gelu", NoScaleEmbedding: true, Subln: true,
		LayernormEps: 1e-6, VocabSize: -1,
	}
}

// parseTorchscale reads torchscale's RetNetConfig form.
func parseTorchscale(raw map[string]json.RawMessage) (*Config, error) {
	o := newTorchscaleConfig()
	if err := strictUnmarshal("torchscale", raw, &o); err != nil {
		return nil, err
	}
	if o.ModelType != "" && o.ModelType != NameRetNet {
		return nil, fmt.Errorf("retnet config: torchscale fields with model_type %q: %w", o.ModelType, api.ErrConfig)
	}
	// RetNetConfig's own resolution: deepnorm turns pre-norm and subln off,
	// subln turns pre-norm on.
	if o.Deepnorm {
		o.NormalizeBefore, o.Subln = false, false
	}
	if o.Subln {
		o.NormalizeBefore = true
	}
	unsupported := func(what string) error {
		return fmt.Errorf("retnet config: torchscale %s: %w", what, api.ErrUnsupported)
	}
	switch {
	case o.Deepnorm:
		return nil, unsupported("deepnorm (post-norm with scaled residuals)")
	case !o.NormalizeBefore:
		return nil, unsupported("decoder_normalize_before false (post-norm)")
	case o.LayernormEmbedding:
		return nil, unsupported("layernorm_embedding")
	case o.MoEFreq != 0:
		return nil, unsupported(fmt.Sprintf("moe_freq %d (mixture of experts)", o.MoEFreq))
	case o.Multiway:
		return nil, unsupported("multiway")
	case o.NoOutputLayer:
		return nil, unsupported("no_output_layer")
	case o.ActivationFn != "swish":
		return nil, unsupported(fmt.Sprintf("activation_fn %q (only swish, the SwiGLU FFN; RetNetConfig's default is gelu)", o.ActivationFn))
	}
	return &Config{
		ModelType: NameRetNet, VocabSize: o.VocabSize, HiddenSize: o.EmbedDim, NumHiddenLayers: o.Layers,
		NumAttentionHeads: o.RetentionHeads, QueryKeyDim: o.EmbedDim, ValueDim: o.ValueEmbedDim,
		FFNDim: o.FFNEmbedDim, RMSNormEps: api.ConfigFloat(o.LayernormEps),
		ScaleEmbedding: !o.NoScaleEmbedding, TieWordEmbeddings: o.ShareInputOutputEmbed,
	}, nil
}

// officialConfig is the official DenseSSM config (a LlamaConfig with extra
// fields). Absent fields take LlamaConfig's defaults and the official code's
// constants (selector bottleneck ratio 32); v_factor and dense_block_layers
// have no default.
type officialConfig struct {
	HiddenSize        int             `json:"hidden_size"`
	QueryKeyDim       int             `json:"query_key_dim"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	RMSNormEps        float64         `json:"rms_norm_eps"`
	VFactor           float64         `json:"v_factor"`
	DenseBlockLayers  *int            `json:"dense_block_layers"`
	VocabSize         int             `json:"vocab_size"`
	TieWordEmbeddings bool            `json:"tie_word_embeddings"`
	KSelectScale      json.Number     `json:"intermediate_k_select_scale"`
	VSelectScale      json.Number     `json:"intermediate_v_select_scale"`
	PadTokenID        json.RawMessage `json:"pad_token_id"`
}

// parseOfficial reads the official DenseSSM config.
func parseOfficial(raw map[string]json.RawMessage) (*Config, error) {
	o := officialConfig{NumAttentionHeads: 32, NumHiddenLayers: 32, RMSNormEps: 1e-6, VocabSize: 32000, HiddenSize: 4096}
	if err := strictUnmarshal("DenseSSM", raw, &o); err != nil {
		return nil, err
	}
	if o.DenseBlockLayers == nil {
		return nil, fmt.Errorf("retnet config (DenseSSM form): no dense_block_layers: %w", api.ErrConfig)
	}
	e := float64(o.HiddenSize) * o.VFactor
	if !(o.VFactor > 0) || e != math.Trunc(e) || e > math.MaxInt32 {
		return nil, fmt.Errorf("retnet config (DenseSSM form): v_factor %g times hidden_size %d is not a positive whole width: %w",
			o.VFactor, o.HiddenSize, api.ErrConfig)
	}
	ratio := func(name string, n json.Number) (int, error) {
		if n == "" {
			return 32, nil // the official code's HiddenProjection(d, 32, ...)
		}
		f, err := n.Float64()
		if err != nil || f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
			return 0, fmt.Errorf("retnet config (DenseSSM form): %s %s is not a positive integer: %w", name, n, api.ErrConfig)
		}
		return int(f), nil
	}
	rk, err := ratio("intermediate_k_select_scale", o.KSelectScale)
	if err != nil {
		return nil, err
	}
	rv, err := ratio("intermediate_v_select_scale", o.VSelectScale)
	if err != nil {
		return nil, err
	}
	c := &Config{
		ModelType: NameDenseRetNet, VocabSize: o.VocabSize, HiddenSize: o.HiddenSize,
		NumHiddenLayers: o.NumHiddenLayers, NumAttentionHeads: o.NumAttentionHeads,
		QueryKeyDim: o.QueryKeyDim, ValueDim: int(e), RMSNormEps: api.ConfigFloat(o.RMSNormEps),
		TieWordEmbeddings: o.TieWordEmbeddings, Dense: dense.Defaults(*o.DenseBlockLayers), DenseVGateRatio: rv,
	}
	c.Dense.GateRatio = rk
	if p := bytes.TrimSpace(o.PadTokenID); len(p) > 0 && string(p) != "null" {
		var id int
		if err := json.Unmarshal(p, &id); err != nil {
			return nil, fmt.Errorf("retnet config (DenseSSM form): pad_token_id %s: %w", p, api.ErrConfig)
		}
		c.PadTokenID = &id
	}
	return c, nil
}
