// Package verify checks, on any model (built in or served by a plugin),
// that its forms compute the same function: the parallel form against the
// chunkwise form (chunks that do and do not divide the length) and the
// recurrent form, a prompt prefilled in windows against one prefill, and a
// state saved and restored against one never interrupted. It is what
// `densessm verify` runs; docs/state.md lists the checks and their
// tolerances.
package verify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/densessm/densessm/api"
)

// Options sets what Run feeds the model and how close the forms must be.
type Options struct {
	// Batch and Tokens are the shape of the random token ids (default 2
	// and 48; Tokens at least 8).
	Batch, Tokens int
	// Seed draws the ids.
	Seed uint64
	// Tol is the largest difference allowed between two forms' logits,
	// relative to the largest logit of the parallel form (default 1e-4:
	// float32 forms that sum in other orders differ by about 1e-6 to 1e-5
	// on the models here). A snapshot restored must continue exactly (0).
	Tol float64
}

// DefaultOptions returns 2 sequences of 48 tokens and a tolerance of 1e-4.
func DefaultOptions() Options { return Options{Batch: 2, Tokens: 48, Seed: 1, Tol: 1e-4} }

// Check is the outcome of one comparison.
type Check struct {
	// Name says what was compared ("recurrent", "chunkwise 7", ...).
	Name string `json:"name"`
	// MaxDiff is the largest absolute difference of the logits, and
	// Scale the largest absolute logit of the reference.
	MaxDiff float64 `json:"max_diff"`
	Scale   float64 `json:"scale"`
	// Tol is the largest MaxDiff/Scale allowed.
	Tol float64 `json:"tol"`
	// StateDiff is the largest absolute difference of the two runs'
	// states where they were compared (snapshots), else -1.
	StateDiff float64 `json:"state_diff"`
	// Pass reports whether the check held; Skipped, when not empty, why it
	// did not run (and then Pass is true).
	Pass    bool   `json:"pass"`
	Skipped string `json:"skipped,omitempty"`
	// Note says what else failed (a state that counts the wrong tokens).
	Note string `json:"note,omitempty"`
}

// add takes the values got, compared with want, into MaxDiff and Scale (a
// NaN difference counts as infinite).
func (c *Check) add(want, got []float32) {
	for k, w := range want {
		c.Scale = max(c.Scale, math.Abs(float64(w)))
		d := math.Abs(float64(got[k]) - float64(w))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		c.MaxDiff = max(c.MaxDiff, d)
	}
}

// Report is every check of a Run.
type Report struct {
	Arch   string  `json:"arch"`
	Batch  int     `json:"batch"`
	Tokens int     `json:"tokens"`
	Checks []Check `json:"checks"`
}

// Failed returns the checks that did not pass.
func (r Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// Run checks m's forms on random ids. An error means a check could not
// run at all (a model call failed); a form that disagrees is a failed
// Check in the report, not an error.
func Run(ctx context.Context, m api.Model, o Options) (Report, error) {
	if o.Batch < 1 || o.Tokens < 8 || !(o.Tol >= 0) {
		return Report{}, fmt.Errorf("verify: batch %d, tokens %d, tolerance %v: want at least 1, 8 and 0: %w", o.Batch, o.Tokens, o.Tol, api.ErrConfig)
	}
	cfg := m.Config()
	r := Report{Arch: cfg.ArchName(), Batch: o.Batch, Tokens: o.Tokens}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	ids := make([][]int32, o.Batch)
	for b := range ids {
		ids[b] = make([]int32, o.Tokens)
		for i := range ids[b] {
			ids[b][i] = int32(rng.IntN(cfg.Vocab()))
		}
	}
	v := &run{ctx: ctx, m: m, o: o, ids: ids, V: cfg.Vocab()}
	want, err := v.forward(api.Form{})
	if err != nil {
		return r, err
	}
	v.want = want
	for _, c := range []func() (Check, error){v.recurrent, v.chunkwise(0), v.chunkwise(1), v.windows, v.snapshot, v.ragged, v.raggedPrefill, v.packed} {
		chk, err := c()
		if err != nil {
			return r, err
		}
		r.Checks = append(r.Checks, chk)
	}
	return r, nil
}

// run holds what the checks share: the ids and the parallel form's
// logits [B][T][V], flattened.
type run struct {
	ctx  context.Context
	m    api.Model
	o    Options
	ids  [][]int32
	V    int
	want []float32
}

// forward returns the logits of the whole sequences in form f.
func (v *run) forward(f api.Form) ([]float32, error) {
	t, err := v.m.Forward(v.ctx, v.ids, f)
	if err != nil {
		return nil, fmt.Errorf("verify: forward (%v): %w", f.Mode, err)
	}
	out := slices.Clone(api.Float32s(t))
	t.Backend().Free(t)
	return out, nil
}

// compare returns the check named name of got against the parallel form's
// logits at the positions [from, from+n) of every sequence, got being
// [B][n][V].
func (v *run) compare(name string, got []float32, from, n int, tol float64) Check {
	c := Check{Name: name, Tol: tol, StateDiff: -1}
	T := v.o.Tokens
	for b := range v.o.Batch {
		for i := range n {
			c.add(v.want[((b*T)+from+i)*v.V:][:v.V], got[(b*n+i)*v.V:][:v.V])
		}
	}
	c.Pass = c.MaxDiff <= tol*max(c.Scale, 1e-30)
	return c
}

// column returns the tokens at position i of every sequence.
func (v *run) column(i int) []int32 {
	out := make([]int32, v.o.Batch)
	for b, s := range v.ids {
		out[b] = s[i]
	}
	return out
}

// steps feeds positions [from, to) one Step at a time into s and returns
// the logits [B][to-from][V].
func (v *run) steps(s api.State, from, to int) ([]float32, error) {
	B, n := v.o.Batch, to-from
	out := make([]float32, B*n*v.V)
	for i := from; i < to; i++ {
		t, err := v.m.Step(v.ctx, s, v.column(i))
		if err != nil {
			return nil, fmt.Errorf("verify: step %d: %w", i, err)
		}
		l := api.Float32s(t)
		for b := range B {
			copy(out[(b*n+i-from)*v.V:][:v.V], l[b*v.V:][:v.V])
		}
	}
	return out, nil
}

// recurrent checks Steps from an empty state against the parallel form.
func (v *run) recurrent() (Check, error) {
	s, err := v.m.NewState(v.o.Batch)
	if err != nil {
		return Check{}, err
	}
	defer s.Close()
	got, err := v.steps(s, 0, v.o.Tokens)
	if err != nil {
		return Check{}, err
	}
	c := v.compare("recurrent", got, 0, v.o.Tokens, v.o.Tol)
	if s.Len() != v.o.Tokens {
		c.Pass = false
		c.Note = fmt.Sprintf("the state counts %d tokens, not %d", s.Len(), v.o.Tokens)
	}
	return c, nil
}

// chunkwise returns the check of the chunkwise form with chunks that
// divide the length (which 0) or do not (which 1).
func (v *run) chunkwise(which int) func() (Check, error) {
	return func() (Check, error) {
		T := v.o.Tokens
		chunk := T / 4 // T >= 8: a chunk of 2 or more
		if which == 1 {
			chunk = 7
			for T%chunk == 0 {
				chunk++
			}
		}
		name := fmt.Sprintf("chunkwise %d", chunk)
		if !v.m.Info().Supports(api.Chunkwise) {
			return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model has no chunkwise form"}, nil
		}
		got, err := v.forward(api.Form{Mode: api.Chunkwise, Chunk: chunk})
		if err != nil {
			return Check{}, err
		}
		return v.compare(name, got, 0, T, v.o.Tol), nil
	}
}

// windows checks a prompt prefilled in windows of 5 tokens, each Prefill
// continuing the state, against the parallel form, and the state it leaves
// against one Prefill of the whole prompt: the next Step's logits, and the
// states themselves when the model has snapshots.
func (v *run) windows() (Check, error) {
	const w = 5
	T, B := v.o.Tokens, v.o.Batch
	prompt := T - 1
	s, err := v.m.NewState(B)
	if err != nil {
		return Check{}, err
	}
	defer s.Close()
	got := make([]float32, 0, B*T*v.V)
	parts := make([][]float32, 0, prompt/w+1)
	for from := 0; from < prompt; from += w {
		to := min(from+w, prompt)
		win := make([][]int32, B)
		for b := range win {
			win[b] = v.ids[b][from:to]
		}
		t, err := v.m.Prefill(v.ctx, s, win, api.Form{})
		if err != nil {
			return Check{}, fmt.Errorf("verify: prefill of tokens %d to %d: %w", from, to, err)
		}
		parts = append(parts, slices.Clone(api.Float32s(t)))
		t.Backend().Free(t)
	}
	// Reorder the windows' [B][n][V] into [B][prompt][V].
	for b := range B {
		for i, p := range parts {
			n := min(w, prompt-i*w)
			got = append(got, p[b*n*v.V:(b+1)*n*v.V]...)
		}
	}
	c := v.compare(fmt.Sprintf("prefill in windows of %d", w), got, 0, prompt, v.o.Tol)

	whole, err := v.m.NewState(B)
	if err != nil {
		return Check{}, err
	}
	defer whole.Close()
	head := make([][]int32, B)
	for b := range head {
		head[b] = v.ids[b][:prompt]
	}
	t, err := v.m.Prefill(v.ctx, whole, head, api.Form{})
	if err != nil {
		return Check{}, fmt.Errorf("verify: prefill: %w", err)
	}
	t.Backend().Free(t)
	a, err := v.steps(s, prompt, T)
	if err != nil {
		return Check{}, err
	}
	b, err := v.steps(whole, prompt, T)
	if err != nil {
		return Check{}, err
	}
	next := v.compare("", a, prompt, 1, v.o.Tol)
	ref := v.compare("", b, prompt, 1, v.o.Tol)
	c.MaxDiff, c.Pass = max(c.MaxDiff, next.MaxDiff), c.Pass && next.Pass && ref.Pass
	if sd, ok, err := stateDiff(v.ctx, v.m, s, whole); err != nil {
		return Check{}, err
	} else if ok {
		c.StateDiff = sd
	}
	return c, nil
}

// snapshot checks that a state saved after the first half of the tokens
// and restored into a new state continues exactly as the original.
func (v *run) snapshot() (Check, error) {
	const name = "snapshot, restore, continue"
	if _, ok := v.m.(api.StateSaver); !ok || !v.m.Info().Snapshots {
		return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model has no state snapshots"}, nil
	}
	T, B, half := v.o.Tokens, v.o.Batch, v.o.Tokens/2
	s, err := v.m.NewState(B)
	if err != nil {
		return Check{}, err
	}
	defer s.Close()
	head := make([][]int32, B)
	for b := range head {
		head[b] = v.ids[b][:half]
	}
	t, err := v.m.Prefill(v.ctx, s, head, api.Form{})
	if err != nil {
		return Check{}, fmt.Errorf("verify: prefill: %w", err)
	}
	t.Backend().Free(t)
	r, err := api.CopyState(v.ctx, v.m, s)
	if err != nil {
		if errors.Is(err, api.ErrUnsupported) {
			return Check{Name: name, Pass: true, StateDiff: -1, Skipped: err.Error()}, nil
		}
		return Check{}, err
	}
	defer r.Close()
	a, err := v.steps(s, half, T)
	if err != nil {
		return Check{}, err
	}
	b, err := v.steps(r, half, T)
	if err != nil {
		return Check{}, err
	}
	c := Check{Name: name, Tol: 0, StateDiff: -1}
	c.add(a, b)
	sd, _, err := stateDiff(v.ctx, v.m, s, r)
	if err != nil {
		return Check{}, err
	}
	c.StateDiff = sd
	c.Pass = c.MaxDiff == 0 && sd == 0
	if r.Len() != T {
		c.Pass = false
		c.Note = fmt.Sprintf("the restored state counts %d tokens, not %d", r.Len(), T)
	}
	return c, nil
}

// lengths returns the lengths of the variable-length and packed checks:
// the sequences cut to T, T-3, T-6, ... tokens (at least 2).
func (v *run) lengths() []int {
	out := make([]int, v.o.Batch)
	for b := range out {
		out[b] = max(v.o.Tokens-3*b, 2)
	}
	return out
}

// ragged checks Forward of the sequences cut to different lengths
// (lengths) against the parallel form's logits at the same positions, and
// that the logits past each sequence's end are zero.
func (v *run) ragged() (Check, error) {
	const name = "variable lengths"
	if !v.m.Info().Packed {
		return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model takes no variable-length batches"}, nil
	}
	lens := v.lengths()
	cut := make([][]int32, len(v.ids))
	for b, n := range lens {
		cut[b] = v.ids[b][:n]
	}
	t, err := v.m.Forward(v.ctx, cut, api.Form{})
	if err != nil {
		return Check{}, fmt.Errorf("verify: forward of variable lengths: %w", err)
	}
	got := slices.Clone(api.Float32s(t))
	t.Backend().Free(t)
	c := Check{Name: name, Tol: v.o.Tol, StateDiff: -1}
	T, V := v.o.Tokens, v.V
	for b, n := range lens {
		c.add(v.want[b*T*V:][:n*V], got[b*T*V:][:n*V])
		for _, x := range got[(b*T+n)*V : (b+1)*T*V] {
			if x != 0 && c.Note == "" {
				c.Note = fmt.Sprintf("logit %g past the end of sequence %d", x, b)
			}
		}
	}
	c.Pass = c.MaxDiff <= c.Tol*max(c.Scale, 1e-30) && c.Note == ""
	return c, nil
}

// raggedPrefill checks Prefill of the sequences cut to different lengths
// (one token short of lengths) from an empty state, and one Step of each
// sequence's next token, against the parallel form's logits at the same
// positions: each sequence continues from its own.
func (v *run) raggedPrefill() (Check, error) {
	const name = "prefill of different lengths, step"
	if !v.m.Info().Packed {
		return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model takes no variable-length batches"}, nil
	}
	lens := v.lengths()
	cut := make([][]int32, len(v.ids))
	next := make([]int32, len(v.ids))
	for b := range lens {
		lens[b]--
		cut[b], next[b] = v.ids[b][:lens[b]], v.ids[b][lens[b]]
	}
	s, err := v.m.NewState(v.o.Batch)
	if err != nil {
		return Check{}, err
	}
	defer s.Close()
	t, err := v.m.Prefill(v.ctx, s, cut, api.Form{})
	if err != nil {
		return Check{}, fmt.Errorf("verify: prefill of different lengths: %w", err)
	}
	got := slices.Clone(api.Float32s(t))
	t.Backend().Free(t)
	c := Check{Name: name, Tol: v.o.Tol, StateDiff: -1}
	T, V, width := v.o.Tokens, v.V, lens[0]
	for b, n := range lens {
		c.add(v.want[b*T*V:][:n*V], got[b*width*V:][:n*V])
	}
	step, err := v.m.Step(v.ctx, s, next)
	if err != nil {
		return Check{}, fmt.Errorf("verify: step after a prefill of different lengths: %w", err)
	}
	after := api.Float32s(step)
	for b, n := range lens {
		c.add(v.want[(b*T+n)*V:][:V], after[b*V:][:V])
	}
	if got := api.StateLens(s); !slices.Equal(got, addOne(lens)) {
		c.Note = fmt.Sprintf("the state counts %v tokens, not %v", got, addOne(lens))
	}
	c.Pass = c.MaxDiff <= c.Tol*max(c.Scale, 1e-30) && c.Note == ""
	return c, nil
}

// addOne returns lens with one more token each.
func addOne(lens []int) []int {
	out := make([]int, len(lens))
	for i, n := range lens {
		out[i] = n + 1
	}
	return out
}

// packed checks the loss of the sequences packed into one row, each a
// document (api.Batch.Starts), against the mean of each sequence's loss
// alone weighted by its tokens. It runs LossAndGrad, so only on a model
// that trains in this process, and leaves its gradients zero.
func (v *run) packed() (Check, error) {
	const name = "packed documents (loss)"
	tr, ok := v.m.(api.Trainable)
	switch {
	case !v.m.Info().Packed:
		return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model takes no packed batches"}, nil
	case !ok || !v.m.Info().Trainable:
		return Check{Name: name, Pass: true, StateDiff: -1, Skipped: "the model does not train in this process"}, nil
	}
	var row, targets []int32
	var starts []int
	var want float64
	total := 0
	for _, n := range v.lengths() {
		total += n - 1
	}
	tr.ZeroGrad()
	defer tr.ZeroGrad()
	for b, n := range v.lengths() {
		in, tg := v.ids[b][:n-1], v.ids[b][1:n]
		if b > 0 {
			starts = append(starts, len(row))
		}
		row, targets = append(row, in...), append(targets, tg...)
		loss, err := tr.LossAndGrad(v.ctx, api.Batch{Inputs: [][]int32{in}, Targets: [][]int32{tg}})
		if err != nil {
			return Check{}, fmt.Errorf("verify: loss of sequence %d: %w", b, err)
		}
		want += loss * float64(n-1) / float64(total)
	}
	got, err := tr.LossAndGrad(v.ctx, api.Batch{Inputs: [][]int32{row}, Targets: [][]int32{targets}, Starts: [][]int{starts}})
	if err != nil {
		return Check{}, fmt.Errorf("verify: loss of the packed row: %w", err)
	}
	c := Check{Name: name, Tol: v.o.Tol, StateDiff: -1}
	c.add([]float32{float32(want)}, []float32{float32(got)})
	c.Pass = c.MaxDiff <= c.Tol*max(c.Scale, 1e-30)
	return c, nil
}

// stateDiff returns the largest difference between the contents of two
// states of m, and false when m has no snapshots.
func stateDiff(ctx context.Context, m api.Model, a, b api.State) (float64, bool, error) {
	sv, ok := m.(api.StateSaver)
	if !ok || !m.Info().Snapshots {
		return 0, false, nil
	}
	sa, err := sv.SaveState(ctx, a)
	if errors.Is(err, api.ErrUnsupported) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	sb, err := sv.SaveState(ctx, b)
	if err != nil {
		return 0, false, err
	}
	d, err := sa.MaxDiff(sb)
	return d, true, err
}

// Drift checks low, a model with low-precision weights (bf16, q8), against
// ref, the same model with float32 weights, over a long generation: ref
// decodes o.Tokens tokens greedily after 8 random ones, both models are fed
// those tokens one Step at a time, and the check holds when every step's
// logits of low are within tol of ref's, relative to ref's largest logit
// over the run. StateDiff is the largest difference of the two final
// states where the models have snapshots. name names the check.
func Drift(ctx context.Context, ref, low api.Model, name string, o Options, tol float64) (Check, error) {
	if o.Tokens < 8 || !(tol >= 0) {
		return Check{}, fmt.Errorf("verify: drift over %d tokens, tolerance %v: %w", o.Tokens, tol, api.ErrConfig)
	}
	V := ref.Config().Vocab()
	if low.Config().Vocab() != V {
		return Check{}, fmt.Errorf("verify: drift: vocabularies of %d and %d: %w", V, low.Config().Vocab(), api.ErrConfig)
	}
	rs, err := ref.NewState(1)
	if err != nil {
		return Check{}, err
	}
	defer rs.Close()
	ls, err := low.NewState(1)
	if err != nil {
		return Check{}, err
	}
	defer ls.Close()
	rng := rand.New(rand.NewPCG(o.Seed, 0xd1f7))
	c := Check{Name: name, Tol: tol, StateDiff: -1}
	tok := int32(rng.IntN(V))
	for i := range o.Tokens {
		rt, err := ref.Step(ctx, rs, []int32{tok})
		if err != nil {
			return Check{}, fmt.Errorf("verify: drift, step %d: %w", i, err)
		}
		lt, err := low.Step(ctx, ls, []int32{tok})
		if err != nil {
			return Check{}, fmt.Errorf("verify: drift, step %d: %w", i, err)
		}
		r := api.Float32s(rt)
		c.add(r, api.Float32s(lt))
		if i < 7 {
			tok = int32(rng.IntN(V))
		} else {
			tok = int32(argmax(r))
		}
	}
	c.Pass = c.MaxDiff <= tol*max(c.Scale, 1e-30)
	if ref.Info().Snapshots && low.Info().Snapshots {
		a, err := ref.(api.StateSaver).SaveState(ctx, rs)
		if err != nil {
			return Check{}, err
		}
		b, err := low.(api.StateSaver).SaveState(ctx, ls)
		if err != nil {
			return Check{}, err
		}
		if c.StateDiff, err = a.MaxDiff(b); err != nil {
			return Check{}, err
		}
	}
	return c, nil
}

// argmax returns the index of the first largest value of row.
func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}
