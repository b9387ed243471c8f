// Command goapi is a short tour of densessm's Go API, using only public
// packages: it loads the built-in default model, generates Go with a
// callback that prints each piece as it is decoded, measures the model's
// perplexity on a piece of Go, and trains a small model for a few steps on
// this program's own source.
//
//	go run ./examples/goapi
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/defaultmodel"
	"github.com/densessm/densessm/eval"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/train"

	// The built-in architectures and the CPU backend register themselves.
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)

func main() {
	if err := run(context.Background(), os.Stdout, 5); err != nil {
		fmt.Fprintln(os.Stderr, "goapi:", err)
		os.Exit(1)
	}
}

// sample is the Go whose perplexity the tour measures.
const sample = `package main

import "fmt"

func main() {
	for i := 0; i < 10; i++ {
		fmt.Println(i)
	}
}
`

// run walks through the API, printing to w, and trains for steps updates.
func run(ctx context.Context, w io.Writer, steps int) error {
	// 1. The default model and its tokenizer, on the CPU backend with
	// every core (api.BuildOptions{} selects it).
	m, err := defaultmodel.Load(ctx, checkpoint.LoadOptions{Build: api.BuildOptions{}})
	if err != nil {
		return err
	}
	tok, err := defaultmodel.Tokenizer()
	if err != nil {
		return err
	}

	// 2. Generate, streaming each piece of text as it is decoded.
	o := generate.TextOptions{Options: generate.DefaultOptions()}
	o.MaxTokens, o.Temperature, o.TopK, o.Seed = 60, 0.8, 40, 1
	prompt := "func main() {"
	fmt.Fprint(w, prompt)
	if _, err := generate.Text(ctx, m, tok, prompt, o, func(piece string) error {
		_, err := fmt.Fprint(w, piece)
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)

	// 3. Perplexity of a piece of Go, carrying the recurrent state.
	enc, err := tok.EncodeFull(sample, false)
	if err != nil {
		return err
	}
	ids := make([]int32, len(enc.IDs))
	for i, id := range enc.IDs {
		ids[i] = int32(id)
	}
	ppl, err := eval.ScorePerplexity(ctx, m, ids, eval.PerplexityOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "perplexity %.2f over %d tokens\n", ppl.Perplexity, ppl.Tokens)

	// 4. Train a fresh small model for a few steps on this program's
	// source, with the default model's tokenizer.
	_, self, _, _ := runtime.Caller(0)
	corpus, err := data.Open([]string{self}, data.SourceOptions{})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "densessm-goapi-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := data.Build(ctx, corpus, filepath.Join(dir, "data"), data.BuildOptions{Tokenizer: tok, Separator: int32(tok.Special().EOS)}); err != nil {
		return err
	}
	tokens, err := data.OpenTokens(filepath.Join(dir, "data", "train.tokens"))
	if err != nil {
		return err
	}
	defer tokens.Close()
	cfg := train.DefaultConfig()
	cfg.Steps, cfg.BatchSize, cfg.SeqLen, cfg.Schedule.Warmup = steps, 2, 64, 1
	loader, err := data.NewLoader(tokens, cfg.SeqLen, cfg.BatchSize, cfg.Seed)
	if err != nil {
		return err
	}
	arch, err := api.LookupArchitecture("densemamba")
	if err != nil {
		return err
	}
	small, err := arch.ParseConfig([]byte(fmt.Sprintf(`{"model_type": "densemamba", "vocab_size": %d, "hidden_size": 64, "num_hidden_layers": 2}`, tok.VocabSize())))
	if err != nil {
		return err
	}
	fresh, err := arch.New(ctx, small, api.BuildOptions{Seed: int64(cfg.Seed)})
	if err != nil {
		return err
	}
	defer fresh.Close()
	tr, err := train.New(fresh, cfg, loader)
	if err != nil {
		return err
	}
	tr.OnStep = func(s train.StepMetrics) { fmt.Fprintf(w, "step %d loss %.4f\n", s.Step, s.Loss) }
	return tr.Run(ctx)
}
