package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/tokenizer"
)

// maxPromptBytes caps a prompt read from stdin.
const maxPromptBytes = 64 << 20

func newGenerateCmd() *cobra.Command {
	var (
		lm       lmFlags
		o        = generate.TextOptions{Options: generate.DefaultOptions()}
		eos      []int
		jsonOut  bool
		noPrompt bool
		states   stateFlags
	)
	o.MaxTokens = 200
	cmd := &cobra.Command{
		Use:   "generate [--model DIR] [flags] PROMPT...",
		Short: "Continue a prompt with a model (default: the built-in model, trained on Go source)",
		Long: `generate continues each PROMPT with the model in --model (default: the
small DenseMamba built into densessm, trained on the Go standard library's
source, which writes Go). PROMPT - reads the prompt from stdin. The prompt is
run through the model in parallel, then tokens are sampled one at a time
from the recurrent form: --temperature 0 (or --top-k 1) is greedy decoding;
otherwise the repetition penalty, temperature, top-k, top-p and min-p apply
in that order, as in Hugging Face transformers. A sequence ends at the
tokenizer's end-of-text token (or --eos), at a --stop string (left out of
the output), or after --max-tokens tokens.

With one prompt the text streams to stdout as it is decoded, after the
prompt (--no-prompt leaves the prompt out). Several prompts are generated
together as one batch, sharing each decoding step, and printed in order,
separated by blank lines. --json prints one JSON object per prompt instead:
{"prompt","text","seed"}. Without --seed the seed is drawn at random; --json
reports it so that a run can be repeated exactly.

--save-state FILE writes the model's recurrent state after the run to FILE
(a state file: docs/state.md): it holds the prompt and every token
sampled. --state FILE continues such a state: the prompt follows what it
holds, as if the earlier prompts and outputs came before it, without
running them again. A state file made by another model (architecture,
configuration or weights) is refused.

--cache-dir DIR keeps the prompt's states in DIR (one every --cache-every
tokens, and one after all but its last token; at most --cache-size of files,
the least recently used going first), and starts from the longest prefix of
the prompt whose state is there: a prompt run before runs one token, one that
shares a prefix with it at most --cache-every. These flags take one prompt.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("seed") {
				o.Seed = rand.Uint64()
			}
			o.EOS = nil
			for _, id := range eos {
				if id < 0 || id > 1<<31-1 {
					return fmt.Errorf("--eos %d: want a token id: %w", id, api.ErrConfig)
				}
				o.EOS = append(o.EOS, int32(id))
			}
			if err := o.Validate(); err != nil {
				return err
			}
			prompts, err := readPrompts(cmd, args)
			if err != nil {
				return err
			}
			if states.used() && len(prompts) != 1 {
				return fmt.Errorf("--state, --save-state and --cache-dir take one prompt, not %d: %w", len(prompts), api.ErrConfig)
			}
			m, tok, err := lm.open(cmd, 512)
			if err != nil {
				return err
			}
			if o.Cache, err = states.cache(cmd.Context(), m); err != nil {
				return err
			}
			if o.State, err = states.open(cmd.Context(), m); err != nil {
				return err
			}
			if o.State != nil {
				defer o.State.Close()
			}
			if err := generateText(cmd, m, tok, prompts, o, jsonOut, noPrompt); err != nil {
				return err
			}
			return states.save(cmd.Context(), m, o.State)
		},
	}
	f := cmd.Flags()
	lm.register(f)
	states.register(f)
	f.IntVar(&o.MaxTokens, "max-tokens", o.MaxTokens, "new tokens per prompt, at most")
	f.Float64Var(&o.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	f.IntVar(&o.TopK, "top-k", 40, "sample from the K most likely tokens (0: all)")
	f.Float64Var(&o.TopP, "top-p", 0.95, "sample from the most likely tokens that make up this probability (1: all)")
	f.Float64Var(&o.MinP, "min-p", 0.05, "drop tokens less likely than this times the most likely one (0: off)")
	f.Float64Var(&o.RepetitionPenalty, "repetition-penalty", 1, "make tokens already seen less likely (1: off)")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the sampler (default: random)")
	f.StringArrayVar(&o.Stop, "stop", nil, "stop when this text appears (repeatable); it is left out of the output")
	f.IntSliceVar(&eos, "eos", nil, "token ids that end a sequence (default: the tokenizer's end-of-text token)")
	f.BoolVar(&o.IgnoreEOS, "ignore-eos", false, "go on past the end-of-text token (stop only at --stop or --max-tokens)")
	f.BoolVar(&jsonOut, "json", false, "print one JSON object per prompt")
	f.BoolVar(&noPrompt, "no-prompt", false, "print only the generated text, not the prompt before it")
	return cmd
}

// generateText decodes prompts and prints the result: streamed for one
// prompt (unless jsonOut), else in order or as JSON lines.
func generateText(cmd *cobra.Command, m api.Model, tok *tokenizer.Tokenizer, prompts []string, o generate.TextOptions, jsonOut, noPrompt bool) error {
	out := cmd.OutOrStdout()
	if len(prompts) == 1 && !jsonOut {
		if !noPrompt {
			if _, err := io.WriteString(out, prompts[0]); err != nil {
				return err
			}
		}
		_, err := generate.Text(cmd.Context(), m, tok, prompts[0], o, func(piece string) error {
			_, err := io.WriteString(out, piece)
			return err
		})
		if err != nil {
			return err
		}
		_, err = io.WriteString(out, "\n")
		return err
	}
	texts, err := generate.Stream(cmd.Context(), m, tok, prompts, o, nil)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	for i, text := range texts {
		if jsonOut {
			if err := enc.Encode(map[string]any{"prompt": prompts[i], "text": text, "seed": o.Seed}); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			io.WriteString(out, "\n")
		}
		if !noPrompt {
			io.WriteString(out, prompts[i])
		}
		if _, err := fmt.Fprintln(out, text); err != nil {
			return err
		}
	}
	return nil
}

// readPrompts returns the prompts of the arguments, reading stdin for "-"
// (once).
func readPrompts(cmd *cobra.Command, args []string) ([]string, error) {
	var stdin *string
	prompts := make([]string, len(args))
	for i, a := range args {
		if a != "-" {
			prompts[i] = a
			continue
		}
		if stdin == nil {
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxPromptBytes+1))
			if err != nil {
				return nil, fmt.Errorf("read the prompt from stdin: %w", err)
			}
			if len(b) > maxPromptBytes {
				return nil, fmt.Errorf("the prompt on stdin is over %d MiB: %w", maxPromptBytes>>20, api.ErrOutOfRange)
			}
			s := strings.TrimSuffix(string(b), "\n")
			stdin = &s
		}
		prompts[i] = *stdin
	}
	for i, p := range prompts {
		if !utf8.ValidString(p) {
			return nil, fmt.Errorf("prompt %d is not valid UTF-8: %w", i+1, api.ErrConfig)
		}
	}
	return prompts, nil
}
