package defaultmodel

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/eval"

	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/backends/cpu"
)

// TestDefaultModelKnowsGo loads the built-in model and scores a file of
// Go it was trained on (the standard library's fmt/print.go): a model
// that learned Go has a low perplexity there, a broken or untrained one
// (uniform: 4096) a high one.
func TestDefaultModelKnowsGo(t *testing.T) {
	m := load(t, api.F32)
	ids := goText(t)
	r, err := eval.ScorePerplexity(context.Background(), m, ids, eval.PerplexityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("perplexity %.3f over %d tokens", r.Perplexity, r.Tokens)
	if r.Perplexity > maxPerplexity {
		t.Fatalf("perplexity %.3f on fmt/print.go, want at most %g", r.Perplexity, maxPerplexity)
	}
}

// TestLowPrecisionPerplexity scores the text of TestDefaultModelKnowsGo
// with the weights in F32, BF16 and Q8_0, prefilling 512 tokens at a time
// (the products go through the GEMM) and, over its first 800 tokens, one
// at a time (the decode kernels), and checks that the perplexity moves by at most
// lowPrecisionPPL relative. The model's weights are bfloat16 values, so
// BF16 storage holds them exactly and only the summation order differs.
func TestLowPrecisionPerplexity(t *testing.T) {
	ids := goText(t)
	for _, chunk := range []int{512, 1} {
		text := ids
		if chunk == 1 || testing.Short() {
			text = ids[:min(len(ids), 800)] // a step per token
		}
		var base float64
		for _, w := range []api.DType{api.F32, api.BF16, api.Q8_0} {
			r, err := eval.ScorePerplexity(context.Background(), load(t, w), text, eval.PerplexityOptions{Chunk: chunk})
			if err != nil {
				t.Fatal(err)
			}
			if w == api.F32 {
				base = r.Perplexity
				continue
			}
			rel := math.Abs(r.Perplexity-base) / base
			t.Logf("chunk %d: %s perplexity %.4f, f32 %.4f: %.2g relative", chunk, api.WeightName(w), r.Perplexity, base, rel)
			if rel > lowPrecisionPPL[w] {
				t.Errorf("chunk %d: %s perplexity %.4f, f32 %.4f: %.2g relative, want at most %g", chunk, api.WeightName(w), r.Perplexity, base, rel, lowPrecisionPPL[w])
			}
		}
	}
}

// lowPrecisionPPL bounds the relative change of the default model's
// perplexity with low-precision weights: issue 15's targets (0.1% for
// bf16, 1% for q8). Measured: 0 and 0.007% on 30,000 held-out tokens
// (docs/benchmarks.md).
var lowPrecisionPPL = map[api.DType]float64{api.BF16: 1e-3, api.Q8_0: 1e-2}

// load loads the built-in model on two threads with its weights in w.
func load(t *testing.T, w api.DType) api.Model {
	t.Helper()
	m, err := Load(context.Background(), checkpoint.LoadOptions{Build: api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 2}, Weights: w}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config().Vocab() != tok.VocabSize() {
		t.Fatalf("model vocabulary %d, tokenizer %d", m.Config().Vocab(), tok.VocabSize())
	}
	return m
}

// goText returns the first 8000 bytes of fmt/print.go as the built-in
// tokenizer encodes them, or skips the test where there is no Go tree.
func goText(t *testing.T) []int32 {
	t.Helper()
	tok, err := Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	root, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skip("no go command:", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(root)), "src", "fmt", "print.go"))
	if err != nil {
		t.Skip("no Go source tree:", err)
	}
	enc, err := tok.EncodeFull(string(src[:min(len(src), 8000)]), false)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(enc.IDs))
	for i, id := range enc.IDs {
		ids[i] = int32(id)
	}
	return ids
}

// maxPerplexity bounds the default model's perplexity on the first 8000
// bytes of fmt/print.go: 24.2 when it was made (the test logs it), 390
// for the same model after 30 steps of training.
const maxPerplexity = 35.0
