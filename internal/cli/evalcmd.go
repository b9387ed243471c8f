package cli

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/eval"
)

func newEvalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure a model: perplexity on text, accuracy on a multiple-choice task",
	}
	cmd.AddCommand(newEvalPPLCmd(), newEvalMCCmd())
	return cmd
}

func newEvalPPLCmd() *cobra.Command {
	var (
		lm        lmFlags
		o         eval.PerplexityOptions
		specs     []string
		src       data.SourceOptions
		maxTokens int64
		jsonOut   bool
		tokens    string
		stateFile string
	)
	cmd := &cobra.Command{
		Use:   "ppl [--model DIR] --data PATH...|--tokens FILE [--mode recurrent|parallel]",
		Short: "Perplexity of a model on text files, folders, globs, JSONL, Parquet or Arrow",
		Long: `ppl reads the documents under --data (as densessm train reads them),
encodes each, joins them with the tokenizer's end-of-text token after every
document (as training packs them) and scores the stream as one text.
--tokens FILE scores a token file instead, such as the held-out split
densessm train writes (DIR/data/val.tokens), which must come from the
model's tokenizer.

--mode recurrent (the default) carries the recurrent state through the whole
stream, so every token is predicted from everything before it, prefilling
--chunk tokens at a time; with --doc-resets the state is emptied after each
end-of-text token, so each document runs from an empty state, as densessm
train --doc-resets trains (a document's first token is still predicted, as
in training, from the logits of the end-of-text token before it). --state
FILE starts from a saved one-sequence state instead (a state learnt by
densessm tune-state, or a prompt's), and with --doc-resets returns to it at
every document. --mode parallel is Hugging Face's sliding window:
windows of --context tokens moving by --stride, each from an empty state,
each token scored once. It prints the perplexity, the mean negative
log-likelihood in nats per token and the bits per byte of text; --json
prints them as JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if stateFile != "" && o.Mode == eval.ModeParallel {
				return fmt.Errorf("--state with --mode parallel: a starting state applies to the recurrent mode only: %w", api.ErrConfig)
			}
			if maxTokens < 0 {
				return fmt.Errorf("--max-tokens %d: want 0 (all) or more: %w", maxTokens, api.ErrConfig)
			}
			if (len(specs) == 0) == (tokens == "") {
				return fmt.Errorf("give the text to score with --data or --tokens (one of them): %w", api.ErrConfig)
			}
			var corpus *data.Corpus
			var tf *data.Tokens
			var err error
			if tokens != "" {
				if tf, err = data.OpenTokens(tokens); err != nil {
					return fmt.Errorf("--tokens: %w", err)
				}
				defer tf.Close()
			} else if corpus, err = data.Open(specs, src); err != nil {
				return fmt.Errorf("--data: %w", err)
			}
			window := o.Chunk
			if o.Mode == eval.ModeParallel {
				window = o.Context
			}
			if window == 0 {
				window = eval.DefaultChunk
				if o.Mode == eval.ModeParallel {
					window = eval.DefaultContext
				}
			}
			m, tok, err := lm.open(cmd, window)
			if err != nil {
				return err
			}
			if o.DocResets {
				if o.Separator = int32(tok.Special().EOS); o.Separator < 0 {
					return fmt.Errorf("--doc-resets: the tokenizer has no end-of-text token to end documents with: %w", api.ErrConfig)
				}
			}
			if stateFile != "" {
				st := stateFlags{load: stateFile}
				if o.Initial, err = st.open(cmd.Context(), m); err != nil {
					return err
				}
				defer o.Initial.Close()
			}
			p, err := eval.NewPerplexity(m, o)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if tf != nil {
				if err := scoreTokens(cmd, p, tf, maxTokens); err != nil {
					return err
				}
				return printPerplexity(cmd, p.Result(), jsonOut)
			}
			bar := newProgress(cmd, corpus.Bytes(), "scoring", true)
			eos := int32(tok.Special().EOS)
			var fed int64
			errEnough := errors.New("enough tokens")
			err = corpus.DocumentsProgress(ctx, func(doc string) error {
				enc, err := tok.EncodeRaw(doc, true)
				if err != nil {
					return err
				}
				ids := make([]int32, 0, len(enc.IDs)+1)
				for _, id := range enc.IDs {
					ids = append(ids, int32(id))
				}
				if eos >= 0 {
					ids = append(ids, eos)
				}
				bytes := len(doc)
				if maxTokens > 0 && fed+int64(len(ids)) > maxTokens {
					ids = ids[:maxTokens-fed]
					if k := len(ids); k > 0 && k <= len(enc.Offsets) {
						bytes = enc.Offsets[k-1][1] // the text of the tokens kept
					}
				}
				fed += int64(len(ids))
				p.AddBytes(int64(bytes))
				if err := p.Feed(ctx, ids); err != nil {
					return err
				}
				if maxTokens > 0 && fed >= maxTokens {
					return errEnough
				}
				return nil
			}, bar.set)
			if err != nil && !errors.Is(err, errEnough) {
				bar.done()
				return err
			}
			err = p.Finish(ctx)
			bar.done()
			if err != nil {
				return err
			}
			return printPerplexity(cmd, p.Result(), jsonOut)
		},
	}
	f := cmd.Flags()
	lm.register(f)
	f.StringArrayVar(&specs, "data", nil, "text to score: file, folder or glob (repeatable)")
	f.StringVar(&tokens, "tokens", "", "token file to score instead of --data (densessm train's DIR/data/val.tokens)")
	f.StringVar(&src.Field, "field", "text", "JSONL field or Parquet/Arrow column of the text")
	f.StringSliceVar(&src.Exts, "ext", nil, "when walking folders, read only files with these extensions")
	f.StringVar(&o.Mode, "mode", eval.ModeRecurrent, "recurrent (whole history) or parallel (sliding windows)")
	f.IntVar(&o.Context, "context", eval.DefaultContext, "parallel: tokens per window")
	f.IntVar(&o.Stride, "stride", 0, "parallel: tokens the window moves by (default: --context/2)")
	f.IntVar(&o.Chunk, "chunk", eval.DefaultChunk, "recurrent: tokens prefilled at a time")
	f.BoolVar(&o.DocResets, "doc-resets", false, "recurrent: run each document from an empty state (as train --doc-resets trains), or from --state")
	f.StringVar(&stateFile, "state", "", "recurrent: start from the one-sequence state in this state file (densessm tune-state, generate --save-state)")
	f.Int64Var(&maxTokens, "max-tokens", 0, "score only the first N tokens of the stream (0: all)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

// scoreTokens feeds the first maxTokens tokens (0: all) of a token file
// to p and finishes it.
func scoreTokens(cmd *cobra.Command, p *eval.Perplexity, tf *data.Tokens, maxTokens int64) error {
	n := tf.Len()
	if maxTokens > 0 {
		n = min(n, maxTokens)
	}
	bar := newProgress(cmd, n, "tokens", false)
	defer bar.done()
	buf := make([]int32, 1<<16)
	for off := int64(0); off < n; {
		chunk := buf[:min(int64(len(buf)), n-off)]
		if err := tf.Read(off, chunk); err != nil {
			return fmt.Errorf("--tokens: %w", err)
		}
		if err := p.Feed(cmd.Context(), chunk); err != nil {
			return fmt.Errorf("--tokens %d to %d: %w", off, off+int64(len(chunk)), err)
		}
		off += int64(len(chunk))
		bar.set(off)
	}
	return p.Finish(cmd.Context())
}

// printPerplexity prints a perplexity result as text or JSON.
func printPerplexity(cmd *cobra.Command, r eval.PerplexityResult, jsonOut bool) error {
	if jsonOut {
		return writeJSON(cmd.OutOrStdout(), r)
	}
	w := cmd.OutOrStdout()
	if r.Bytes > 0 {
		_, err := fmt.Fprintf(w, "perplexity %.4f (%.4f nats/token, %.4f bits/byte) over %d tokens, %d bytes\n", r.Perplexity, r.NLL, r.BitsPerByte, r.Tokens, r.Bytes)
		return err
	}
	_, err := fmt.Fprintf(w, "perplexity %.4f (%.4f nats/token) over %d tokens\n", r.Perplexity, r.NLL, r.Tokens)
	return err
}

func newEvalMCCmd() *cobra.Command {
	var (
		lm        lmFlags
		task      string
		delimiter string
		jsonOut   bool
		details   bool
	)
	cmd := &cobra.Command{
		Use:   "mc [--model DIR] --task FILE.jsonl",
		Short: "Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness scores PIQA, HellaSwag, ARC",
		Long: `mc scores a multiple-choice task: a JSONL file with one example per line,
{"context": "...", "choices": ["...", ...], "label": K} (K is the 0-based
index of the right choice; an example may set its own "delimiter"). Each
choice is scored by the log-likelihood of its tokens after the context's,
with --delimiter between them, as lm-evaluation-harness does: acc counts the
examples whose most likely choice is the label, acc_norm does the same with
each log-likelihood divided by the choice's length in characters (as lm-evaluation-harness divides). Standard errors
are those lm-evaluation-harness reports. eval/testdata/go-syntax.jsonl is an
example task for the default model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.Open(task)
			if err != nil {
				return fmt.Errorf("--task: %w", err)
			}
			examples, err := eval.ReadMCTask(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("--task %s: %w", task, err)
			}
			m, tok, err := lm.open(cmd, 2048)
			if err != nil {
				return err
			}
			var opts eval.MCOptions
			if cmd.Flags().Changed("delimiter") {
				opts.Delimiter = &delimiter
			}
			bar := newProgress(cmd, int64(len(examples)), "examples", false)
			r, err := eval.ScoreMC(cmd.Context(), m, tok, examples, opts, func(done, _ int) { bar.set(int64(done)) })
			bar.done()
			if err != nil {
				return err
			}
			if !details {
				r.Details = nil
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), mcJSON(r))
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%d examples\n", r.Examples)
			fmt.Fprintf(w, "acc      %.4f ± %.4f\n", r.Acc, r.AccStderr)
			_, err = fmt.Fprintf(w, "acc_norm %.4f ± %.4f\n", r.AccNorm, r.AccNormStderr)
			if details {
				for i, d := range r.Details {
					fmt.Fprintf(w, "%d: pred %d pred_norm %d label %d loglik %v\n", i, d.Pred, d.PredNorm, d.Label, d.LogLik)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	lm.register(f)
	f.StringVar(&task, "task", "", "the task: JSONL of {\"context\",\"choices\",\"label\"}")
	f.StringVar(&delimiter, "delimiter", " ", "text between the context and each choice, for examples that do not set their own")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	f.BoolVar(&details, "details", false, "also print each example's scores")
	cmd.MarkFlagRequired("task")
	return cmd
}

// mcJSON returns r for encoding/json, with the standard errors that are
// not defined (one example) as null.
func mcJSON(r eval.MCResult) any {
	num := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	}
	return map[string]any{
		"examples": r.Examples, "acc": r.Acc, "acc_stderr": num(r.AccStderr),
		"acc_norm": r.AccNorm, "acc_norm_stderr": num(r.AccNormStderr), "details": r.Details,
	}
}
