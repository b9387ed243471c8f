package retnet

import (
	"errors"
	"math"
	"math/rand/v2"
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
	modeltest.CheckFieldDomains(t,
		// torchscale's RetNetConfig names.
		modeltest.Domain(NameRetNet, ts, "decoder_embed_dim", "0", "-8", "1048578", "6", `"8"`),
		modeltest.Domain(NameRetNet, ts, "decoder_value_embed_dim", "0", "7", "4194306"),
		modeltest.Domain(NameRetNet, ts, "decoder_retention_heads", "0", "21"),
		modeltest.Domain(NameRetNet, ts, "decoder_ffn_embed_dim", "0", "-1", "4194305"),
		modeltest.Domain(NameRetNet, ts, "decoder_retention_heads", "3").Naming("decoder_embed_dim"), // 8 does not split into 3 heads
		modeltest.Domain(NameRetNet, ts, "decoder_layers", "0", "65537"),
		modeltest.Domain(NameRetNet, ts, "layernorm_eps", "0", "-1e-6", "1.5", "1e-60", "1e999"),
		modeltest.Domain(NameRetNet, ts, "vocab_size", "-1", "0", "2147483648"),
		modeltest.Domain(NameRetNet, ts, "activation_fn", `"relu"`).Wrapping(api.ErrUnsupported),
		modeltest.Domain(NameRetNet, ts, "dropout", "1", "-0.1", "2"),
		modeltest.Domain(NameRetNet, ts, "activation_dropout", "1.5"),
		modeltest.Domain(NameRetNet, ts, "drop_path_rate", "-1"),
		// The official DenseSSM config's names.
		modeltest.Domain(NameDenseRetNet, off, "hidden_size", "0", "1048577"),
		modeltest.Domain(NameDenseRetNet, off, "query_key_dim", "0", "6", "4194306"),
		modeltest.Domain(NameDenseRetNet, off, "num_attention_heads", "0", "22"),
		modeltest.Domain(NameDenseRetNet, off, "num_hidden_layers", "0", "70000"),
		modeltest.Domain(NameDenseRetNet, off, "rms_norm_eps", "0", "-1", "1e300"),
		modeltest.Domain(NameDenseRetNet, off, "v_factor", "0", "-2", "1.3", "1e30"),
		modeltest.Domain(NameDenseRetNet, off, "v_factor", "0.125").Naming("v_factor*hidden_size"), // a width of 1 for 2 heads
		modeltest.Domain(NameDenseRetNet, off, "dense_block_layers", "-1", "65537"),
		modeltest.Domain(NameDenseRetNet, off, "intermediate_k_select_scale", "0", "2.5", "1e999"),
		modeltest.Domain(NameDenseRetNet, off, "intermediate_v_select_scale", "-4", "1048577"),
		modeltest.Domain(NameDenseRetNet, off, "vocab_size", "0", "2147483648"),
		modeltest.Domain(NameDenseRetNet, off, "pad_token_id", "10", "-1", `"x"`),
		modeltest.Domain(NameDenseRetNet, off, "initializer_range", "-0.02"),
		modeltest.Domain(NameDenseRetNet, off, "dropout", "1"),
		// The toolkit's own names.
		modeltest.Domain(NameDenseRetNet, own, "vocab_size", "0"),
		modeltest.Domain(NameDenseRetNet, own, "hidden_size", "-1"),
		modeltest.Domain(NameDenseRetNet, own, "num_hidden_layers", "0"),
		modeltest.Domain(NameDenseRetNet, own, "num_attention_heads", "0", "21", "-2"),
		modeltest.Domain(NameDenseRetNet, own, "query_key_dim", "0", "6", "4194306"),
		modeltest.Domain(NameDenseRetNet, own, "value_dim", "0", "15", "4194306"),
		modeltest.Domain(NameDenseRetNet, own, "ffn_dim", "8", "-1"),
		modeltest.Domain(NameDenseRetNet, own, "rms_norm_eps", "0", "2"),
		modeltest.Domain(NameDenseRetNet, own, "pad_token_id", "-1", "10"),
		modeltest.Domain(NameDenseRetNet, own, "dense.m", "-1", "65537"),
		modeltest.Domain(NameDenseRetNet, own, "dense.projection", `"conv"`, `""`),
		modeltest.Domain(NameDenseRetNet, own, "dense.gate", `"sigmoid"`),
		modeltest.Domain(NameDenseRetNet, own, "dense.gate_ratio", "0", "-1", "1048577"),
		modeltest.Domain(NameDenseRetNet, own, "dense.fusion", `"mul"`),
		modeltest.Domain(NameDenseRetNet, own, "dense.norm", `"layernorm"`),
		modeltest.Domain(NameDenseRetNet, own, "dense_v_gate_ratio", "0", "-1", "1048577"),
		modeltest.Domain(NameDenseRetNet, own, "dense", `{"m": 0, "projection": "identity", "gate": "none", "fusion": "concat", "norm": "none"}`).Naming("dense.m"),
		modeltest.Domain(NameDenseRetNet, own, "model_type", `"retnet"`),
		modeltest.Domain(NameRetNet, ownR, "query_key_dim", "16"),
		modeltest.Domain(NameRetNet, ownR, "ffn_dim", "0"),
		modeltest.Domain(NameRetNet, ownR, "dense", `{"m": 1}`),
		modeltest.Domain(NameRetNet, ownR, "dense_v_gate_ratio", "4"),
	)
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
	modeltest.CheckCommittedConfigs(t, []string{NameRetNet, NameDenseRetNet}, "*retnet*.json", func(path string) string {
		if strings.Contains(filepath.Base(filepath.Dir(path)), "retnet-h") {
			return NameRetNet
		}
		return NameDenseRetNet
	})
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
