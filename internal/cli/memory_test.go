package cli

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// TestMemoryCheckCountsWeightStorage checks that the memory check before
// a model is built counts its weights in the storage it is built with:
// under a --max-memory between what the model needs with Q8_0 weights and
// with F32 ones, a Q8_0 model runs (a file converted to q8, which loads as
// q8 by default; an F32 file loaded with --weights q8; bench model
// --weights q8) and an F32 one is refused (the q8 file with --weights f32,
// the F32 file, bench model at F32).
func TestMemoryCheckCountsWeightStorage(t *testing.T) {
	cfg := mamba.DefaultConfig(mamba.NameMamba)
	cfg.VocabSize, cfg.HiddenSize, cfg.NumHiddenLayers, cfg.IntermediateSize = 4096, 256, 2, 512
	cfg.TieWordEmbeddings = false
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), 1)
	if err != nil {
		t.Fatal(err)
	}
	f32Dir, q8Dir := filepath.Join(t.TempDir(), "f32"), filepath.Join(t.TempDir(), "q8")
	if err := checkpoint.SaveModel(t.Context(), f32Dir, m); err != nil {
		t.Fatal(err)
	}
	if _, errOut, st := runCLI(t, "convert", "--in", f32Dir, "--out", q8Dir, "--dtype", "q8"); st != 0 {
		t.Fatalf("convert --dtype q8: status %d: %s", st, errOut)
	}
	configFile := filepath.Join(f32Dir, checkpoint.ConfigFileName)

	est := cfg.EstimateMemory()
	const benchTokens = 16 // bench model's least prefill
	q8Need, f32Need := est.InferenceBytesFor(api.Q8_0, 1, benchTokens), est.InferenceBytes(1, 2)
	budget := (q8Need + f32Need) / 2
	if q8Need >= budget || budget >= f32Need || est.WeightBytesFor(api.Q8_0) > est.WeightBytes/3 {
		t.Fatalf("the test model does not separate the storages: q8 needs %d, f32 %d (weights %d and %d)",
			q8Need, f32Need, est.WeightBytesFor(api.Q8_0), est.WeightBytes)
	}
	maxMemory := []string{"--max-memory", strconv.FormatInt(budget, 10)}
	for _, tc := range []struct {
		what string
		args []string
		fits bool
	}{
		{"q8 file", []string{"logits", "--model", q8Dir}, true},
		{"q8 file, --weights f32", []string{"logits", "--model", q8Dir, "--weights", "f32"}, false},
		{"f32 file, --weights q8", []string{"logits", "--model", f32Dir, "--weights", "q8"}, true},
		{"f32 file", []string{"logits", "--model", f32Dir}, false},
		{"bench model --weights q8", []string{"bench", "model", "--arch", "mamba", "--config", configFile, "--weights", "q8", "--prefill", "0", "--decode", "1"}, true},
		{"bench model", []string{"bench", "model", "--arch", "mamba", "--config", configFile, "--prefill", "0", "--decode", "1"}, false},
	} {
		args := append(append([]string(nil), tc.args...), maxMemory...)
		if tc.args[0] == "logits" {
			args = append(args, "--ids", "1,2", "--out", filepath.Join(t.TempDir(), "l.npy"))
		}
		_, errOut, st := runCLI(t, args...)
		switch {
		case tc.fits && st != 0:
			t.Errorf("%s: refused under a budget of %d bytes: %s", tc.what, budget, errOut)
		case !tc.fits && (st == 0 || !strings.Contains(errOut, "--max-memory")):
			t.Errorf("%s: status %d under a budget of %d bytes (%q), want the memory check's refusal", tc.what, st, budget, errOut)
		}
	}
}
