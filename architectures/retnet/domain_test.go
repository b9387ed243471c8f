package retnet

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
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
		ts = `{"model_type": "retnet", "decoder_embed_dim": 8, "decoder_value_embed_dim": 8, "decoder_retention_heads": 2,
			"decoder_ffn_embed_dim": 8, "decoder_layers": 1, "vocab_size": 10, "activation_fn": "swish"}`
		off = `{"hidden_size": 8, "query_key_dim": 4, "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 10,
			"v_factor": 2, "dense_block_layers": 1, "pad_token_id": 0}`
		own = `{"model_type": "denseretnet", "hidden_size": 8, "query_key_dim": 4, "value_dim": 16, "num_attention_heads": 2,
			"num_hidden_layers": 1, "vocab_size": 10, "dense": {"m": 1, "projection": "identity", "gate": "silu-mlp",
			"gate_ratio": 4, "fusion": "add", "norm": "rmsnorm"}, "dense_v_gate_ratio": 2}`
		ownR = `{"model_type": "retnet", "hidden_size": 8, "query_key_dim": 8, "value_dim": 16, "num_attention_heads": 2,
			"num_hidden_layers": 1, "vocab_size": 10, "ffn_dim": 12}`
	)
	for _, base := range []struct{ arch, json string }{
		{NameRetNet, ts}, {NameDenseRetNet, off}, {NameDenseRetNet, own}, {NameRetNet, ownR},
	} {
		if _, err := ParseConfig(base.arch, []byte(base.json)); err != nil {
			t.Fatalf("base config %s: %v", base.json, err)
		}
	}
	for _, tc := range []struct {
		arch, base, path string
		values           []string
		field            string // the field the error names; path when empty
	}{
		// torchscale's RetNetConfig names.
		{NameRetNet, ts, "decoder_embed_dim", []string{"0", "-8", "1048578", "6", `"8"`}, ""},
		{NameRetNet, ts, "decoder_value_embed_dim", []string{"0", "7", "4194306"}, ""},
		{NameRetNet, ts, "decoder_retention_heads", []string{"0", "21"}, ""},
		{NameRetNet, ts, "decoder_ffn_embed_dim", []string{"0", "-1", "4194305"}, ""},
		{NameRetNet, ts, "decoder_retention_heads", []string{"3"}, "decoder_embed_dim"}, // 8 does not split into 3 heads
		{NameRetNet, ts, "decoder_layers", []string{"0", "65537"}, ""},
		{NameRetNet, ts, "layernorm_eps", []string{"0", "-1e-6", "1.5", "1e-60", "1e999"}, ""},
		{NameRetNet, ts, "vocab_size", []string{"-1", "0", "2147483648"}, ""},
		{NameRetNet, ts, "activation_fn", []string{`"relu"`}, ""},
		{NameRetNet, ts, "dropout", []string{"1", "-0.1", "2"}, ""},
		{NameRetNet, ts, "activation_dropout", []string{"1.5"}, ""},
		{NameRetNet, ts, "drop_path_rate", []string{"-1"}, ""},
		// The official DenseSSM config's names.
		{NameDenseRetNet, off, "hidden_size", []string{"0", "1048577"}, ""},
		{NameDenseRetNet, off, "query_key_dim", []string{"0", "6", "4194306"}, ""},
		{NameDenseRetNet, off, "num_attention_heads", []string{"0", "22"}, ""},
		{NameDenseRetNet, off, "num_hidden_layers", []string{"0", "70000"}, ""},
		{NameDenseRetNet, off, "rms_norm_eps", []string{"0", "-1", "1e300"}, ""},
		{NameDenseRetNet, off, "v_factor", []string{"0", "-2", "1.3", "1e30"}, ""},
		{NameDenseRetNet, off, "v_factor", []string{"0.125"}, "v_factor*hidden_size"}, // a width of 1 for 2 heads
		{NameDenseRetNet, off, "dense_block_layers", []string{"-1", "65537"}, ""},
		{NameDenseRetNet, off, "intermediate_k_select_scale", []string{"0", "2.5", "1e999"}, ""},
		{NameDenseRetNet, off, "intermediate_v_select_scale", []string{"-4", "1048577"}, ""},
		{NameDenseRetNet, off, "vocab_size", []string{"0", "2147483648"}, ""},
		{NameDenseRetNet, off, "pad_token_id", []string{"10", "-1", `"x"`}, ""},
		{NameDenseRetNet, off, "initializer_range", []string{"-0.02"}, ""},
		{NameDenseRetNet, off, "dropout", []string{"1"}, ""},
		// The toolkit's own names.
		{NameDenseRetNet, own, "vocab_size", []string{"0"}, ""},
		{NameDenseRetNet, own, "hidden_size", []string{"-1"}, ""},
		{NameDenseRetNet, own, "num_hidden_layers", []string{"0"}, ""},
		{NameDenseRetNet, own, "num_attention_heads", []string{"0", "21", "-2"}, ""},
		{NameDenseRetNet, own, "query_key_dim", []string{"0", "6", "4194306"}, ""},
		{NameDenseRetNet, own, "value_dim", []string{"0", "15", "4194306"}, ""},
		{NameDenseRetNet, own, "ffn_dim", []string{"8", "-1"}, ""},
		{NameDenseRetNet, own, "rms_norm_eps", []string{"0", "2"}, ""},
		{NameDenseRetNet, own, "pad_token_id", []string{"-1", "10"}, ""},
		{NameDenseRetNet, own, "dense.m", []string{"-1", "65537"}, ""},
		{NameDenseRetNet, own, "dense.projection", []string{`"conv"`, `""`}, ""},
		{NameDenseRetNet, own, "dense.gate", []string{`"sigmoid"`}, ""},
		{NameDenseRetNet, own, "dense.gate_ratio", []string{"0", "-1", "1048577"}, ""},
		{NameDenseRetNet, own, "dense.fusion", []string{`"mul"`}, ""},
		{NameDenseRetNet, own, "dense.norm", []string{`"layernorm"`}, ""},
		{NameDenseRetNet, own, "dense_v_gate_ratio", []string{"0", "-1", "1048577"}, ""},
		{NameDenseRetNet, own, "dense", []string{`{"m": 0, "projection": "identity", "gate": "none", "fusion": "concat", "norm": "none"}`}, "dense.m"},
		{NameDenseRetNet, own, "model_type", []string{`"retnet"`}, ""},
		{NameRetNet, ownR, "query_key_dim", []string{"16"}, ""},
		{NameRetNet, ownR, "ffn_dim", []string{"0"}, ""},
		{NameRetNet, ownR, "dense", []string{`{"m": 1}`}, ""},
		{NameRetNet, ownR, "dense_v_gate_ratio", []string{"4"}, ""},
	} {
		want := tc.field
		if want == "" {
			want = tc.path
		}
		for _, v := range tc.values {
			data := modeltest.WithField(t, tc.base, tc.path, v)
			_, err := ParseConfig(tc.arch, data)
			if !errors.Is(err, api.ErrConfig) && !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s = %s: got %v, want an error naming %s", tc.path, v, err, want)
			}
			if !errors.Is(err, api.ErrConfig) && tc.path != "activation_fn" {
				t.Errorf("%s = %s: %v does not wrap api.ErrConfig", tc.path, v, err)
			}
		}
	}
}

// TestValidateNonFinite checks the values JSON cannot hold but Go callers
// can set.
func TestValidateNonFinite(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		c := DefaultConfig(NameDenseRetNet)
		c.RMSNormEps = api.ConfigFloat(v)
		if err := c.Validate(); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), "rms_norm_eps") {
			t.Errorf("rms_norm_eps = %v: %v", v, err)
		}
	}
}

// TestCommittedConfigsValidate checks that the defaults and every
// committed config.json of a RetNet or DenseRetNet model still parse.
func TestCommittedConfigsValidate(t *testing.T) {
	for _, arch := range []string{NameRetNet, NameDenseRetNet} {
		if err := DefaultConfig(arch).Validate(); err != nil {
			t.Errorf("default %s: %v", arch, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "config.json"))
	bench, _ := filepath.Glob(filepath.Join("..", "..", "bench", "configs", "*retnet*.json"))
	if len(files) == 0 {
		t.Fatal("no fixture configs")
	}
	for _, f := range append(files, bench...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		arch := NameDenseRetNet
		if strings.Contains(filepath.Base(filepath.Dir(f)), "retnet-h") {
			arch = NameRetNet
		}
		if _, err := ParseConfig(arch, data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRandomConfigsInitFinite draws small valid configurations and checks
// that a freshly initialised model has only finite parameters.
func TestRandomConfigsInitFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	b := cpu.New(api.BackendOptions{Threads: 1})
	gates := []string{dense.GateSiluMLP, dense.GateLinear, dense.GateNone}
	for i := range 40 {
		c := DefaultConfig([]string{NameRetNet, NameDenseRetNet}[i%2])
		H := 1 + r.IntN(4)
		c.VocabSize, c.NumHiddenLayers, c.NumAttentionHeads = 1+r.IntN(40), 1+r.IntN(3), H
		c.HiddenSize = 2 * H * (1 + r.IntN(4))
		c.QueryKeyDim, c.ValueDim, c.FFNDim = c.HiddenSize, H*(1+r.IntN(6)), 1+r.IntN(20)
		c.RMSNormEps = api.ConfigFloat(math.Exp(-60 * r.Float64()))
		c.ScaleEmbedding, c.TieWordEmbeddings = r.IntN(2) == 0, r.IntN(2) == 0
		if r.IntN(2) == 0 {
			c.PadTokenID = new(int)
			*c.PadTokenID = r.IntN(c.VocabSize)
		}
		if c.ModelType == NameDenseRetNet {
			c.QueryKeyDim, c.FFNDim = 2*H*(1+r.IntN(3)), 0
			c.Dense.M, c.Dense.Gate = r.IntN(4), gates[r.IntN(3)]
			c.Dense.GateRatio, c.DenseVGateRatio = 1+r.IntN(40), 1+r.IntN(40)
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

// TestMaxHeads checks that the most heads Validate allows run: every decay
// is below 1 in float32, which the retention kernels require.
func TestMaxHeads(t *testing.T) {
	c := tinyConfig(NameRetNet, 0)
	c.NumAttentionHeads, c.HiddenSize, c.QueryKeyDim, c.ValueDim = maxHeads, 2*maxHeads, 2*maxHeads, maxHeads
	m := newTestModel(t, c, cpu.New(api.BackendOptions{Threads: 1}), 1)
	if _, err := m.Forward(t.Context(), [][]int32{{1, 2, 3}}, api.Form{}); err != nil {
		t.Fatalf("%d heads: %v", maxHeads, err)
	}
	c.NumAttentionHeads, c.HiddenSize, c.QueryKeyDim, c.ValueDim = maxHeads+1, 2*maxHeads+2, 2*maxHeads+2, maxHeads+1
	if err := c.Validate(); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), "num_attention_heads") {
		t.Errorf("%d heads: %v", maxHeads+1, err)
	}
}
