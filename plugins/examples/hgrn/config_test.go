package hgrn

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/cfgcheck"
)

// TestParseConfig checks defaults for absent fields, the tolerance of
// unknown fields, and the round trip of a config through its JSON.
func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size": 64, "some_future_field": [1, 2], "dense_m": 0}`))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.HiddenSize, want.DenseM = 64, 0
	if *c != *want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	own := tinyConfig(2, false)
	own.LowerBoundMax, own.RMSNormEps = 0.5, 1e-6
	data, err := json.Marshal(own)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if *back != *own {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, own)
	}
	// Through the registry, as the CLI reads --model-config.
	a, err := api.LookupArchitecture(Name)
	if err != nil {
		t.Fatal(err)
	}
	def, err := json.Marshal(a.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.ParseConfig(def)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ArchName() != Name || cfg.Vocab() != DefaultConfig().VocabSize || cfg.Validate() != nil {
		t.Errorf("default config read back as %+v", cfg)
	}
}

// TestConfigErrors checks that every field outside its domain is refused
// with an error that wraps api.ErrConfig and names the field.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, field string }{
		{`{"vocab_size": 0}`, "vocab_size"},
		{`{"vocab_size": 2147483648}`, "vocab_size"},
		{`{"hidden_size": -3}`, "hidden_size"},
		{`{"hidden_size": 1048577}`, "hidden_size"},
		{`{"num_hidden_layers": 0}`, "num_hidden_layers"},
		{`{"intermediate_size": 0}`, "intermediate_size"},
		{`{"lower_bound_max": 1}`, "lower_bound_max"},
		{`{"lower_bound_max": -0.1}`, "lower_bound_max"},
		{`{"dense_m": -1}`, "dense_m"},
		{`{"dense_m": 65537}`, "dense_m"},
		{`{"rms_norm_eps": 0}`, "rms_norm_eps"},
		{`{"rms_norm_eps": 1e-50}`, "rms_norm_eps"},
		{`{"rms_norm_eps": 2}`, "rms_norm_eps"},
		{`{"dropout": 1.5}`, "dropout"},
		{`{"initializer_range": -1}`, "initializer_range"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		var fe *cfgcheck.FieldError
		switch {
		case !errors.Is(err, api.ErrConfig):
			t.Errorf("%s: got %v, want an error wrapping api.ErrConfig", tc.json, err)
		case !errors.As(err, &fe) || fe.Field != tc.field:
			t.Errorf("%s: got %v, want an error naming %s", tc.json, err, tc.field)
		case !strings.Contains(err.Error(), tc.field):
			t.Errorf("%s: message %q does not name %s", tc.json, err, tc.field)
		}
	}
	for _, tc := range []struct{ json, mention string }{
		{`{`, "hgrn config"},
		{`{"model_type": "mamba"}`, "model_type"},
		{`{"hidden_size": "8"}`, "hidden_size"},
		{`{"lower_bound_max": "high"}`, "lower_bound_max"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: got %v, want an error wrapping api.ErrConfig mentioning %s", tc.json, err, tc.mention)
		}
	}
	bad := DefaultConfig()
	bad.ModelType = "retnet"
	if err := bad.Validate(); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), "model_type") {
		t.Errorf("Validate of model_type retnet: %v", err)
	}
}
