package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/defaultmodel"
	"github.com/densessm/densessm/tokenizer"
)

// lmFlags are the flags of the commands that run a language model on text
// (generate, eval): the model directory (or the default model), its
// tokenizer and the loading options.
type lmFlags struct {
	model, tokenizer, arch string
	threads                int
	load                   loadFlags
}

func (l *lmFlags) register(f *pflag.FlagSet) {
	f.StringVar(&l.model, "model", "", "model directory (config.json, weights, tokenizer.json); default: the built-in default model")
	f.StringVar(&l.tokenizer, "tokenizer", "", "tokenizer.json (default: the model directory's)")
	f.StringVar(&l.arch, "arch", "", "architecture of --model (default: from its config.json)")
	f.IntVar(&l.threads, "threads", 0, "backend threads (0: every core)")
	l.load.register(f)
}

// open loads the model and its tokenizer, refusing a model that would not
// fit in memory with a parallel pass over tokens tokens.
func (l *lmFlags) open(cmd *cobra.Command, tokens int) (api.Model, *tokenizer.Tokenizer, error) {
	if l.threads < 0 {
		return nil, nil, fmt.Errorf("--threads %d: want 0 (every core) or more: %w", l.threads, api.ErrConfig)
	}
	var tok *tokenizer.Tokenizer
	var err error
	if l.tokenizer != "" {
		if tok, err = tokenizer.Load(l.tokenizer); err != nil {
			return nil, nil, fmt.Errorf("--tokenizer: %w", err)
		}
	}
	var m api.Model
	if l.model == "" {
		if l.arch != "" || l.load.allowExtra || l.load.allowNonFinite {
			return nil, nil, fmt.Errorf("--arch, --allow-extra and --allow-nonfinite apply to a --model directory: %w", api.ErrConfig)
		}
		if tok == nil {
			if tok, err = defaultmodel.Tokenizer(); err != nil {
				return nil, nil, err
			}
		}
		build, err := buildOptions(cmd, l.threads)
		if err != nil {
			return nil, nil, err
		}
		m, err = defaultmodel.Load(cmd.Context(), checkpoint.LoadOptions{
			Build:       build,
			CheckConfig: func(cfg api.Config, weights api.DType) error { return checkModelMemory(cmd, cfg, weights, tokens) },
		})
		if err != nil {
			return nil, nil, err
		}
	} else {
		if tok == nil {
			path := filepath.Join(l.model, tokenizerFile)
			if tok, err = tokenizer.Load(path); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					return nil, nil, fmt.Errorf("--model %s has no %s: give one with --tokenizer: %w", l.model, tokenizerFile, err)
				}
				return nil, nil, err
			}
		}
		if m, err = loadModel(cmd, l.model, l.arch, l.threads, tokens, l.load); err != nil {
			return nil, nil, err
		}
	}
	if tok.VocabSize() > m.Config().Vocab() {
		return nil, nil, fmt.Errorf("the tokenizer has %d tokens and the model only %d logits: is it the model's tokenizer? %w", tok.VocabSize(), m.Config().Vocab(), api.ErrConfig)
	}
	return m, tok, nil
}
