package mamba

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/densessm/densessm/api"
)

func TestParseConfigForms(t *testing.T) {
	hf := `{"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280,
		"state_size": 16, "time_step_rank": "auto", "intermediate_size": 1536, "tie_word_embeddings": true}`
	c, err := ParseConfig(NameMamba, []byte(hf))
	if err != nil {
		t.Fatal(err)
	}
	if c.TimeStepRank != 48 || c.IntermediateSize != 1536 || c.ConvKernel != 4 || c.VocabSize != 50280 || c.Dense.M != 0 {
		t.Errorf("HF form: %+v", c)
	}
	orig := `{"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
		"residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8}`
	c, err = ParseConfig(NameMamba, []byte(orig))
	if err != nil {
		t.Fatal(err)
	}
	if c.VocabSize != 50280 || c.HiddenSize != 768 || c.NumHiddenLayers != 24 || !c.TieWordEmbeddings {
		t.Errorf("original form: %+v", c)
	}
	if !(architecture{NameMamba}).RecognizesConfig([]byte(orig)) || (architecture{NameMamba}).RecognizesConfig([]byte(hf)) {
		t.Error("RecognizesConfig")
	}
	// Our own form round-trips, dense knobs included.
	own := tinyConfig(NameDenseMamba, TargetH)
	data, err := json.Marshal(own)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(NameDenseMamba, data)
	if err != nil {
		t.Fatal(err)
	}
	if *back != *own {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, own)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		arch, json string
		want       error
	}{
		"not json":          {NameMamba, `{`, api.ErrConfig},
		"no layers":         {NameMamba, `{"model_type":"mamba","hidden_size":8}`, api.ErrConfig},
		"other arch":        {NameMamba, `{"model_type":"densemamba","hidden_size":8,"num_hidden_layers":1}`, api.ErrConfig},
		"inner mismatch":    {NameMamba, `{"hidden_size":8,"num_hidden_layers":1,"intermediate_size":7}`, api.ErrConfig},
		"bad knob":          {NameDenseMamba, `{"hidden_size":8,"num_hidden_layers":1,"dense":{"m":1,"projection":"conv","gate":"none","fusion":"add","norm":"none"}}`, api.ErrConfig},
		"h with norm":       {NameDenseMamba, `{"hidden_size":8,"num_hidden_layers":1,"dense_target":"h","dense":{"m":1,"projection":"identity","gate":"none","fusion":"add","norm":"rmsnorm"}}`, api.ErrConfig},
		"mamba2 layer":      {NameMamba, `{"d_model":8,"n_layer":1,"vocab_size":10,"ssm_cfg":{"layer":"Mamba2"}}`, api.ErrUnsupported},
		"layernorm blocks":  {NameMamba, `{"d_model":8,"n_layer":1,"vocab_size":10,"rms_norm":false}`, api.ErrUnsupported},
		"negative dense m":  {NameDenseMamba, `{"hidden_size":8,"num_hidden_layers":1,"dense":{"m":-1}}`, api.ErrConfig},
		"unknown target":    {NameDenseMamba, `{"hidden_size":8,"num_hidden_layers":1,"dense_target":"y"}`, api.ErrConfig},
		"relu":              {NameMamba, `{"hidden_size":8,"num_hidden_layers":1,"hidden_act":"relu"}`, api.ErrConfig},
		"zero state":        {NameMamba, `{"hidden_size":8,"num_hidden_layers":1,"state_size":0}`, api.ErrConfig},
		"negative epsilon":  {NameMamba, `{"hidden_size":8,"num_hidden_layers":1,"layer_norm_epsilon":-1}`, api.ErrConfig},
		"string for number": {NameMamba, `{"hidden_size":"8","num_hidden_layers":1}`, api.ErrConfig},
	} {
		if _, err := ParseConfig(tc.arch, []byte(tc.json)); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}
