package defaultmodel

import (
	"context"
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
	m, err := Load(context.Background(), checkpoint.LoadOptions{Build: api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 2}}})
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
	r, err := eval.ScorePerplexity(context.Background(), m, ids, eval.PerplexityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("perplexity %.3f over %d tokens", r.Perplexity, r.Tokens)
	if r.Perplexity > maxPerplexity {
		t.Fatalf("perplexity %.3f on fmt/print.go, want at most %g", r.Perplexity, maxPerplexity)
	}
}

// maxPerplexity bounds the default model's perplexity on the first 8000
// bytes of fmt/print.go: 24.2 when it was made (the test logs it), 390
// for the same model after 30 steps of training.
const maxPerplexity = 35.0
