package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/verify"
)

func newVerifyCmd() *cobra.Command {
	var (
		lm       lmFlags
		o        = verify.DefaultOptions()
		jsonOut  bool
		drift    int
		driftTol float64
	)
	cmd := &cobra.Command{
		Use:   "verify [--model DIR] [--tokens N] [--batch B] [--tol X] [--json]",
		Short: "Check that a model's parallel, chunkwise and recurrent forms and its state snapshots agree",
		Long: `verify runs the model in --model (default: the built-in model; a plugin's
model as well) over random token ids in every form it has and compares them
with the parallel form: Steps from an empty state, the chunkwise form with
chunks that do and do not divide the length, a prompt prefilled in windows
of 5 tokens (and the state it leaves against one prefill), and a state
saved after half the tokens and restored, which must continue exactly.
--drift N also loads the model with bf16 and with q8 weights and compares
each with the float32 model over N tokens of greedy generation, every
step's logits within --drift-tol of the largest logit.

It prints a table: each check's largest logit difference, the largest
logit, their ratio against --tol, the largest state difference where states
were compared, and pass or fail; --json prints the same as one JSON object.
It exits with status 1 when a check fails. docs/state.md explains the
checks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, _, err := lm.open(cmd, o.Batch*o.Tokens)
			if err != nil {
				return err
			}
			r, err := verify.Run(cmd.Context(), m, o)
			if err != nil {
				return err
			}
			if drift > 0 {
				checks, err := driftChecks(cmd, &lm, m, drift, o, driftTol)
				if err != nil {
					return err
				}
				r.Checks = append(r.Checks, checks...)
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				enc := json.NewEncoder(out)
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else if err := printVerify(cmd, r); err != nil {
				return err
			}
			if failed := r.Failed(); len(failed) > 0 {
				names := make([]string, len(failed))
				for i, c := range failed {
					names[i] = c.Name
				}
				return fmt.Errorf("verify: %d of %d checks failed: %s: %w", len(failed), len(r.Checks), strings.Join(names, "; "), api.ErrInternal)
			}
			return nil
		},
	}
	f := cmd.Flags()
	lm.register(f)
	f.IntVar(&o.Tokens, "tokens", o.Tokens, "tokens per sequence (at least 8)")
	f.IntVar(&o.Batch, "batch", o.Batch, "sequences")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the random token ids")
	f.Float64Var(&o.Tol, "tol", o.Tol, "largest logit difference allowed between forms, relative to the largest logit")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.IntVar(&drift, "drift", 0, "also load the model with bf16 and with q8 weights and compare each with float32 over this many tokens of greedy generation (0: off)")
	f.Float64Var(&driftTol, "drift-tol", 0.05, "with --drift, the largest logit difference allowed, relative to the largest logit")
	return cmd
}

// driftChecks loads the model of lm again with bf16 and with q8 weights
// and compares each with m, which must have float32 weights, over tokens
// tokens (verify.Drift).
func driftChecks(cmd *cobra.Command, lm *lmFlags, m api.Model, tokens int, o verify.Options, tol float64) ([]verify.Check, error) {
	if w := m.Info().Weights; w != api.F32 && w != api.Invalid {
		return nil, fmt.Errorf("--drift compares bf16 and q8 weights with float32 ones, and the model has %s weights: %w", api.WeightName(w), api.ErrConfig)
	}
	o.Tokens = tokens
	var out []verify.Check
	for _, w := range []string{"bf16", "q8"} {
		if err := cmd.Flags().Set("weights", w); err != nil {
			return nil, err
		}
		low, _, err := lm.open(cmd, 0)
		if err != nil {
			return nil, err
		}
		c, err := verify.Drift(cmd.Context(), m, low, fmt.Sprintf("%s weights against f32, %d tokens", w, tokens), o, tol)
		low.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// printVerify prints r as a table.
func printVerify(cmd *cobra.Command, r verify.Report) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%s model, %d sequences of %d random tokens\n", r.Arch, r.Batch, r.Tokens)
	fmt.Fprintln(w, "check\tmax |Δ logit|\tmax |logit|\trelative\ttolerance\tmax |Δ state|\tresult")
	for _, c := range r.Checks {
		if c.Skipped != "" {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\tskipped: %s\n", c.Name, c.Skipped)
			continue
		}
		state := "-"
		if c.StateDiff >= 0 {
			state = fmt.Sprintf("%.3g", c.StateDiff)
		}
		result := "pass"
		if !c.Pass {
			result = "FAIL"
		}
		if c.Note != "" {
			result += ": " + c.Note
		}
		fmt.Fprintf(w, "%s\t%.3g\t%.3g\t%.3g\t%.3g\t%s\t%s\n", c.Name, c.MaxDiff, c.Scale, c.MaxDiff/max(c.Scale, 1e-30), c.Tol, state, result)
	}
	return w.Flush()
}
