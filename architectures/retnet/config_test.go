package retnet

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
)

func TestParseTorchscaleConfig(t *testing.T) {
	ts := `{"model_type": "retnet", "decoder_embed_dim": 512, "decoder_value_embed_dim": 864,
		"decoder_retention_heads": 2, "decoder_ffn_embed_dim": 864, "decoder_layers": 6, "vocab_size": 50,
		"activation_fn": "swish", "layernorm_eps": 1e-5, "no_scale_embedding": false,
		"share_decoder_input_output_embed": true, "subln": true, "xpos_rel_pos": true, "dropout": 0.1,
		"chunkwise_recurrent": true, "recurrent_chunk_size": 4}`
	c, err := ParseConfig(NameRetNet, []byte(ts))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{ModelType: NameRetNet, VocabSize: 50, HiddenSize: 512, NumHiddenLayers: 6, NumAttentionHeads: 2,
		QueryKeyDim: 512, ValueDim: 864, FFNDim: 864, RMSNormEps: 1e-5, ScaleEmbedding: true, TieWordEmbeddings: true}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("torchscale form:\n got %+v\nwant %+v", c, want)
	}
	// RetNetConfig's defaults: 768/1280/1280/12 layers, no scaling (its
	// default of 3 heads does not divide 1280).
	c, err = ParseConfig(NameRetNet, []byte(`{"decoder_retention_heads": 4, "vocab_size": 10, "activation_fn": "swish"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 768 || c.ValueDim != 1280 || c.NumHiddenLayers != 12 || c.FFNDim != 1280 || c.ScaleEmbedding || c.RMSNormEps != 1e-6 {
		t.Errorf("torchscale defaults: %+v", c)
	}
	a := architecture{NameRetNet}
	if !a.RecognizesConfig([]byte(ts)) || a.RecognizesConfig([]byte(`{"hidden_size": 8}`)) {
		t.Error("retnet RecognizesConfig")
	}
}

func TestParseOfficialConfig(t *testing.T) {
	// The shape of the published 350M checkpoint.
	official := `{"model_type": "llama", "hidden_size": 1536, "query_key_dim": 768, "num_attention_heads": 2,
		"num_hidden_layers": 16, "rms_norm_eps": 1e-06, "v_factor": 2, "dense_block_layers": 2,
		"vocab_size": 32001, "tie_word_embeddings": false, "pad_token_id": 0, "hidden_act": "silu",
		"intermediate_k_select_scale": 8, "intermediate_v_select_scale": 32, "deepnorm": false, "dropout": 0.1}`
	c, err := ParseConfig(NameDenseRetNet, []byte(official))
	if err != nil {
		t.Fatal(err)
	}
	pad := 0
	d := dense.Defaults(2)
	d.GateRatio = 8
	want := &Config{ModelType: NameDenseRetNet, VocabSize: 32001, HiddenSize: 1536, NumHiddenLayers: 16,
		NumAttentionHeads: 2, QueryKeyDim: 768, ValueDim: 3072, RMSNormEps: 1e-6, PadTokenID: &pad,
		Dense: d, DenseVGateRatio: 32}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("official form:\n got %+v\nwant %+v", c, want)
	}
	if c.KeyHeadDim() != 384 || c.ValueHeadDim() != 1536 {
		t.Errorf("head widths %d, %d", c.KeyHeadDim(), c.ValueHeadDim())
	}
	// Without the published selector ratios: the official code's 32, 32;
	// a null pad_token_id is no padding row.
	c, err = ParseConfig(NameDenseRetNet, []byte(`{"hidden_size": 64, "query_key_dim": 32, "num_attention_heads": 2,
		"num_hidden_layers": 2, "v_factor": 2.0, "dense_block_layers": 0, "vocab_size": 40, "pad_token_id": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Dense.M != 0 || c.Dense.GateRatio != 32 || c.DenseVGateRatio != 32 || c.PadTokenID != nil || c.ValueDim != 128 {
		t.Errorf("official form without ratios: %+v", c)
	}
	da, ra := architecture{NameDenseRetNet}, architecture{NameRetNet}
	if !da.RecognizesConfig([]byte(official)) || ra.RecognizesConfig([]byte(official)) {
		t.Error("RecognizesConfig of the official config")
	}
	if _, err := ParseConfig(NameRetNet, []byte(official)); !errors.Is(err, api.ErrConfig) {
		t.Errorf("official config read as retnet: %v", err)
	}
}

func TestOwnConfigRoundTrip(t *testing.T) {
	for name, own := range variants() {
		own.PadTokenID = new(int)
		*own.PadTokenID = 2
		data, err := json.Marshal(own)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseConfig(own.ModelType, data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(back, own) {
			t.Errorf("%s: round trip:\n got %+v\nwant %+v", name, back, own)
		}
	}
	// A value gate ratio defaults to the key one.
	c, err := ParseConfig(NameDenseRetNet, []byte(`{"model_type": "denseretnet", "hidden_size": 32, "query_key_dim": 16,
		"value_dim": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "vocab_size": 9,
		"dense": {"m": 1, "projection": "identity", "gate": "silu-mlp", "gate_ratio": 4, "fusion": "add", "norm": "rmsnorm"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DenseVGateRatio != 4 {
		t.Errorf("dense_v_gate_ratio %d, want 4", c.DenseVGateRatio)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const ts = `"model_type": "retnet", "decoder_embed_dim": 8, "decoder_value_embed_dim": 8, "decoder_retention_heads": 2,
		"decoder_ffn_embed_dim": 8, "decoder_layers": 1, "vocab_size": 10`
	const off = `"hidden_size": 8, "query_key_dim": 4, "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 10`
	const own = `"model_type": "denseretnet", "hidden_size": 8, "query_key_dim": 4, "value_dim": 16, "num_attention_heads": 2,
		"num_hidden_layers": 1, "vocab_size": 10`
	for name, tc := range map[string]struct {
		arch, json string
		want       error
	}{
		"not json":                 {NameRetNet, `{`, api.ErrConfig},
		"torchscale gelu default":  {NameRetNet, `{` + ts + `}`, api.ErrUnsupported},
		"torchscale relu":          {NameRetNet, `{` + ts + `, "activation_fn": "relu"}`, api.ErrUnsupported},
		"torchscale deepnorm":      {NameRetNet, `{` + ts + `, "activation_fn": "swish", "deepnorm": true}`, api.ErrUnsupported},
		"torchscale post-norm":     {NameRetNet, `{` + ts + `, "activation_fn": "swish", "subln": false, "decoder_normalize_before": false}`, api.ErrUnsupported},
		"torchscale emb layernorm": {NameRetNet, `{` + ts + `, "activation_fn": "swish", "layernorm_embedding": true}`, api.ErrUnsupported},
		"torchscale moe":           {NameRetNet, `{` + ts + `, "activation_fn": "swish", "moe_freq": 2}`, api.ErrUnsupported},
		"torchscale multiway":      {NameRetNet, `{` + ts + `, "activation_fn": "swish", "multiway": true}`, api.ErrUnsupported},
		"torchscale no output":     {NameRetNet, `{` + ts + `, "activation_fn": "swish", "no_output_layer": true}`, api.ErrUnsupported},
		"torchscale odd head":      {NameRetNet, `{` + ts + `, "activation_fn": "swish", "decoder_embed_dim": 6}`, api.ErrConfig},
		"torchscale no vocab":      {NameRetNet, `{` + ts + `, "activation_fn": "swish", "vocab_size": -1}`, api.ErrConfig},
		"torchscale as dense":      {NameDenseRetNet, `{` + ts + `, "activation_fn": "swish"}`, api.ErrConfig},
		"torchscale other type":    {NameRetNet, `{` + ts + `, "activation_fn": "swish", "model_type": "llama"}`, api.ErrConfig},
		"official no m":            {NameDenseRetNet, `{` + off + `, "v_factor": 2}`, api.ErrConfig},
		"official fractional e":    {NameDenseRetNet, `{` + off + `, "v_factor": 1.3, "dense_block_layers": 1}`, api.ErrConfig},
		"official zero ratio":      {NameDenseRetNet, `{` + off + `, "v_factor": 2, "dense_block_layers": 1, "intermediate_k_select_scale": 0}`, api.ErrConfig},
		"official heads":           {NameDenseRetNet, `{` + off + `, "v_factor": 2, "dense_block_layers": 1, "num_attention_heads": 3}`, api.ErrConfig},
		"official bad pad":         {NameDenseRetNet, `{` + off + `, "v_factor": 2, "dense_block_layers": 1, "pad_token_id": "x"}`, api.ErrConfig},
		"pad outside vocab":        {NameDenseRetNet, `{` + own + `, "pad_token_id": 10}`, api.ErrConfig},
		"own ffn for dense":        {NameDenseRetNet, `{` + own + `, "ffn_dim": 8}`, api.ErrConfig},
		"own odd key head":         {NameDenseRetNet, `{` + own + `, "query_key_dim": 6}`, api.ErrConfig},
		"own bad knob":             {NameDenseRetNet, `{` + own + `, "dense": {"m": 1, "projection": "conv", "gate": "none", "fusion": "add", "norm": "none"}}`, api.ErrConfig},
		"own negative m":           {NameDenseRetNet, `{` + own + `, "dense": {"m": -1, "projection": "identity", "gate": "none", "fusion": "add", "norm": "none"}}`, api.ErrConfig},
		"own m 0 concat":           {NameDenseRetNet, `{` + own + `, "dense": {"m": 0, "projection": "identity", "gate": "none", "fusion": "concat", "norm": "none"}}`, api.ErrConfig},
		"own zero value ratio":     {NameDenseRetNet, `{` + own + `, "dense_v_gate_ratio": -1}`, api.ErrConfig},
		"own epsilon":              {NameDenseRetNet, `{` + own + `, "rms_norm_eps": 0}`, api.ErrConfig},
		"own other arch":           {NameRetNet, `{` + own + `}`, api.ErrConfig},
		"retnet with dense knobs":  {NameRetNet, `{"model_type": "retnet", "dense": {"m": 1}}`, api.ErrConfig},
		"retnet key width":         {NameRetNet, `{"model_type": "retnet", "query_key_dim": 64}`, api.ErrConfig},
		"string for number":        {NameRetNet, `{"model_type": "retnet", "hidden_size": "8"}`, api.ErrConfig},
	} {
		if _, err := ParseConfig(tc.arch, []byte(tc.json)); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}
