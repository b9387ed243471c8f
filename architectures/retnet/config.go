package retnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/cfgcheck"
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

// maxHeads is the most heads a model may have: head h decays by gamma_h =
// 1 - 2^(-5-h), which rounds to 1 in float32 from h = 20 on, and the
// retention kernels need gamma in (0,1).
const maxHeads = 20

// Validate checks every field against its domain and the fields against
// one another. The error names the first field outside its domain, as the
// toolkit's config.json spells it (ParseConfig renames it for the other
// forms), and wraps api.ErrConfig. The domains:
//
//	model_type            retnet or denseretnet
//	vocab_size            1 .. 2^31-1 (token ids are int32)
//	hidden_size           1 .. 2^20
//	num_hidden_layers     1 .. 2^16
//	num_attention_heads   1 .. 20
//	query_key_dim         1 .. 2^22, heads of an even width; hidden_size for retnet
//	value_dim             1 .. 2^22, a multiple of the heads
//	ffn_dim               1 .. 2^22 for retnet, 0 for denseretnet
//	rms_norm_eps          (0, 1], not 0 as a float32
//	pad_token_id          absent, or in [0, vocab_size)
//	dense                 for denseretnet, see dense.Config.Validate (the
//	                      knobs are needed even with m = 0, whose
//	                      projection must be identity and fusion add);
//	                      absent for retnet
//	dense_v_gate_ratio    as dense.gate_ratio; 0 for retnet
func (c *Config) Validate() error {
	k := cfgcheck.New("retnet config")
	k.OneOf("model_type", c.ModelType, NameRetNet, NameDenseRetNet)
	k.Int("vocab_size", c.VocabSize, 1, cfgcheck.MaxVocab)
	k.Int("hidden_size", c.HiddenSize, 1, cfgcheck.MaxModel)
	k.Int("num_hidden_layers", c.NumHiddenLayers, 1, cfgcheck.MaxLayers)
	k.Int("num_attention_heads", c.NumAttentionHeads, 1, maxHeads)
	k.Int("query_key_dim", c.QueryKeyDim, 1, cfgcheck.MaxInner)
	if k.OK() && (c.QueryKeyDim%c.NumAttentionHeads != 0 || c.KeyHeadDim()%2 != 0) {
		k.Fail("query_key_dim", c.QueryKeyDim, "must split into %d heads of an even width", c.NumAttentionHeads)
	}
	k.Int("value_dim", c.ValueDim, 1, cfgcheck.MaxInner)
	if k.OK() && c.ValueDim%c.NumAttentionHeads != 0 {
		k.Fail("value_dim", c.ValueDim, "must split into %d heads", c.NumAttentionHeads)
	}
	if c.gau() {
		if c.FFNDim != 0 {
			k.Fail("ffn_dim", c.FFNDim, "must be 0 (denseretnet has no FFN)")
		}
	} else {
		k.Int("ffn_dim", c.FFNDim, 1, cfgcheck.MaxInner)
	}
	k.Epsilon("rms_norm_eps", float64(c.RMSNormEps))
	if k.OK() && c.PadTokenID != nil && (*c.PadTokenID < 0 || *c.PadTokenID >= c.VocabSize) {
		k.Fail("pad_token_id", *c.PadTokenID, "must be in [0, vocab_size = %d)", c.VocabSize)
	}
	if !c.gau() {
		if k.OK() && c.QueryKeyDim != c.HiddenSize {
			k.Fail("query_key_dim", c.QueryKeyDim, "must be hidden_size = %d for retnet", c.HiddenSize)
		}
		if k.OK() && c.Dense != (dense.Config{}) {
			knobs, _ := json.Marshal(c.Dense)
			k.Fail("dense", json.RawMessage(knobs), "must be absent for retnet (use model_type denseretnet)")
		}
		if k.OK() && c.DenseVGateRatio != 0 {
			k.Fail("dense_v_gate_ratio", c.DenseVGateRatio, "must be absent for retnet (use model_type denseretnet)")
		}
		return k.Err()
	}
	if err := k.Err(); err != nil {
		return err
	}
	// The links exist on every layer whatever M is, so the knobs are
	// checked as for M >= 1.
	kl, vl := c.linkConfigs()
	for i, lc := range []dense.Config{kl, vl} {
		if lc.M == 0 {
			lc.M = 1
		}
		if err := lc.Validate(); err != nil {
			return cfgcheck.Rename(err, "retnet config", func(f string) string {
				if f == "gate_ratio" && i == 1 {
					return "dense_v_gate_ratio"
				}
				return "dense." + f
			})
		}
	}
	if c.Dense.M == 0 && (c.Dense.Projection != dense.ProjIdentity || c.Dense.Fusion != dense.FuseAdd) {
		k.Fail("dense.m", 0, "needs projection identity and fusion add, not %q and %q (nothing is fused)", c.Dense.Projection, c.Dense.Fusion)
	}
	return k.Err()
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
		c     *Config
		err   error
		names map[string]string // Validate's field names as this form spells them
	)
	switch {
	case isTorchscale(raw):
		c, err = parseTorchscale(data)
		names = torchscaleNames
	case isOfficialDense(raw):
		c, err = parseOfficial(data)
		names = officialNames
	default:
		c, err = parseOwn(arch, data, raw)
	}
	if err != nil {
		return nil, err
	}
	if c.ModelType != arch {
		return nil, fmt.Errorf("retnet config: model_type %q read as %q: %w", c.ModelType, arch, api.ErrConfig)
	}
	k := cfgcheck.New("retnet config")
	k.Unused(raw)
	if err := k.Err(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, cfgcheck.RenameMap(err, "", names)
	}
	return c, nil
}

// torchscaleNames maps the fields Validate names to RetNetConfig's.
var torchscaleNames = map[string]string{
	"hidden_size":         "decoder_embed_dim",
	"query_key_dim":       "decoder_embed_dim",
	"value_dim":           "decoder_value_embed_dim",
	"num_attention_heads": "decoder_retention_heads",
	"ffn_dim":             "decoder_ffn_embed_dim",
	"num_hidden_layers":   "decoder_layers",
	"rms_norm_eps":        "layernorm_eps",
}

// officialNames maps the fields Validate names to the official DenseSSM
// config's.
var officialNames = map[string]string{
	"value_dim":          "v_factor*hidden_size",
	"dense.m":            "dense_block_layers",
	"dense.gate_ratio":   "intermediate_k_select_scale",
	"dense_v_gate_ratio": "intermediate_v_select_scale",
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

// strictUnmarshal decodes the config.json data into dst, reporting a value
// of the wrong type as an error wrapping api.ErrConfig.
func strictUnmarshal(form string, data []byte, dst any) error {
	if err := json.Unmarshal(data, dst); err != nil {
		return fmt.Errorf("retnet config (%s form): %v: %w", form, err, api.ErrConfig)
	}
	return nil
}

// parseOwn reads the toolkit's own form from the config.json data, whose
// fields are raw. Absent fields take DefaultConfig's values, except
// dense_v_gate_ratio, which defaults to dense.gate_ratio.
func parseOwn(arch string, data []byte, raw map[string]json.RawMessage) (*Config, error) {
	c := DefaultConfig(arch)
	c.ModelType, c.DenseVGateRatio = "", 0
	if err := strictUnmarshal("toolkit", data, c); err != nil {
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
func parseTorchscale(data []byte) (*Config, error) {
	o := newTorchscaleConfig()
	if err := strictUnmarshal("torchscale", data, &o); err != nil {
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
func parseOfficial(data []byte) (*Config, error) {
	o := officialConfig{NumAttentionHeads: 32, NumHiddenLayers: 32, RMSNormEps: 1e-6, VocabSize: 32000, HiddenSize: 4096}
	if err := strictUnmarshal("DenseSSM", data, &o); err != nil {
		return nil, err
	}
	if o.DenseBlockLayers == nil {
		return nil, fmt.Errorf("retnet config (DenseSSM form): no dense_block_layers: %w", api.ErrConfig)
	}
	k := cfgcheck.New("retnet config")
	k.Int("hidden_size", o.HiddenSize, 1, cfgcheck.MaxModel)
	k.Float("v_factor", o.VFactor, 0, math.MaxFloat32, true)
	e := float64(o.HiddenSize) * o.VFactor
	if k.OK() && (e != math.Trunc(e) || e < 1 || e > cfgcheck.MaxInner) {
		k.Fail("v_factor", o.VFactor, "v_factor*hidden_size = %g must be a whole number in [1, %d]", e, cfgcheck.MaxInner)
	}
	ratio := func(name string, n json.Number) int {
		if n == "" {
			return 32 // the official code's HiddenProjection(d, 32, ...)
		}
		f, err := n.Float64()
		if err != nil || f != math.Trunc(f) || f < 1 || f > cfgcheck.MaxRatio {
			k.Fail(name, json.RawMessage(n), "must be a whole number in [1, %d]", cfgcheck.MaxRatio)
			return 0
		}
		return int(f)
	}
	rk := ratio("intermediate_k_select_scale", o.KSelectScale)
	rv := ratio("intermediate_v_select_scale", o.VSelectScale)
	if err := k.Err(); err != nil {
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
