// Package conformance checks that two models are the same model, bit for
// bit: a model served by a plugin against the same model in process. The
// plugin host's tests run it for every built-in architecture through
// densessm-backend-cpu, and a plugin's author can run it for theirs.
package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/train"
	"github.com/densessm/densessm/verify"
)

// Check is the conformance suite: got (a model through a plugin, say) must
// behave as want (the same model in process, built with the same
// configuration, seed and threads), bit for bit: the same info and
// parameters, logits in every form want has, prefill and steps, state
// snapshots (the subtest "state snapshots", skipped when neither model
// saves its states: api.StateSaver), its forms against each other
// (verify.Run, the checks of densessm verify: the subtest "forms agree"),
// sampled text, training steps
// (losses, gradient norms, then weights and optimizer state), variable-
// length and packed batches (the subtest "packed batches", skipped when
// want's Info.Packed is false) and written parameters. Both models are
// changed by the training steps.
func Check(t *testing.T, want, got api.Model) {
	ctx := t.Context()
	wi, gi := want.Info(), got.Info()
	if wi.Arch != gi.Arch || !slices.Equal(wi.Modes, gi.Modes) || wi.Trainable != gi.Trainable || wi.Snapshots != gi.Snapshots || gi.Local {
		t.Fatalf("info: %+v, want %+v (and not local)", gi, wi)
	}
	if w, g := want.Params(), got.Params(); !slices.EqualFunc(w, g, func(a, b api.ParamInfo) bool {
		return a.Name == b.Name && a.DType == b.DType && a.Shape.Equal(b.Shape)
	}) {
		t.Fatalf("params differ: %d vs %d", len(w), len(g))
	}
	sameParams(t, "built", want, got)

	rng := rand.New(rand.NewPCG(1, 2))
	V := want.Config().Vocab()
	ids := func(b, n int) [][]int32 {
		out := make([][]int32, b)
		for i := range out {
			for range n {
				out[i] = append(out[i], int32(rng.IntN(V)))
			}
		}
		return out
	}
	seqs := ids(2, 7)
	for _, mode := range wi.Modes {
		f := api.Form{Mode: mode, Chunk: 3}
		w, err := want.Forward(ctx, seqs, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Forward(ctx, seqs, f)
		if err != nil {
			t.Fatal(err)
		}
		sameTensor(t, fmt.Sprintf("forward %s", mode), w, g)
	}

	ws, err := want.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := got.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	f := api.Form{Mode: api.Chunkwise}
	w, err := want.Prefill(ctx, ws, seqs, f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Prefill(ctx, gs, seqs, f)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "prefill", w, g)
	wl, gl := must(want.NewState(2)), must(got.NewState(2))
	defer gl.Close()
	w, err = generate.PrefillLast(ctx, want, wl, seqs) // the model's PrefillLast where it has one
	if err != nil {
		t.Fatal(err)
	}
	g, err = generate.PrefillLast(ctx, got, gl, seqs)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "prefill, last logits", w, g)
	for i := range 3 {
		next := []int32{int32(i), int32(V - 1 - i)}
		w, err := want.Step(ctx, ws, next)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Step(ctx, gs, next)
		if err != nil {
			t.Fatal(err)
		}
		sameTensor(t, fmt.Sprintf("step %d", i), w, g)
		if ws.Len() != gs.Len() {
			t.Errorf("step %d: state length %d, want %d", i, gs.Len(), ws.Len())
		}
	}
	t.Run("state snapshots", func(t *testing.T) { checkSnapshots(t, want, got, ws, gs) })
	t.Run("forms agree", func(t *testing.T) { checkVerify(t, got) })
	if err := gs.Reset(); err != nil || gs.Len() != 0 {
		t.Errorf("reset: %v, length %d", err, gs.Len())
	}

	gen := generate.DefaultOptions()
	gen.MaxTokens, gen.Temperature, gen.TopK, gen.Seed = 12, 0.9, 20, 5
	prompts := ids(2, 4)
	wt, err := generate.Generate(ctx, want, prompts, gen, nil)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := generate.Generate(ctx, got, prompts, gen, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(wt, gt, slices.Equal) {
		t.Errorf("sampled %v, want %v", gt, wt)
	}

	wst, err := train.Stepper(want)
	if err != nil {
		t.Fatal(err)
	}
	gst, err := train.Stepper(got)
	if err != nil {
		t.Fatal(err)
	}
	opt := train.DefaultOptimizer()
	for step := range 3 {
		var req api.TrainStepRequest
		for range 2 {
			seq := ids(2, 9)
			b := api.Batch{}
			for _, s := range seq {
				b.Inputs, b.Targets = append(b.Inputs, s[:8]), append(b.Targets, s[1:])
			}
			req.Batches = append(req.Batches, b)
		}
		req.Optimizer, req.LR, req.ClipNorm = opt, 3e-3, 0.5
		w, err := wst.TrainStep(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gst.TrainStep(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if w != g {
			t.Errorf("train step %d: %+v, want %+v", step, g, w)
		}
	}
	t.Run("packed batches", func(t *testing.T) { checkPacked(t, want, got, wst, gst) })
	sameParams(t, "trained", want, got)
	wo, err := wst.OptimizerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gO, err := gst.OptimizerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wo.Steps != gO.Steps || len(wo.Tensors) != len(gO.Tensors) || len(wo.Tensors) == 0 {
		t.Fatalf("optimizer state: %d steps %d tensors, want %d and %d", gO.Steps, len(gO.Tensors), wo.Steps, len(wo.Tensors))
	}
	for i := range wo.Tensors {
		if wo.Tensors[i].Name != gO.Tensors[i].Name || !bytes.Equal(wo.Tensors[i].Data, gO.Tensors[i].Data) {
			t.Fatalf("optimizer state %s differs", wo.Tensors[i].Name)
		}
	}
	if err := gst.SetOptimizerState(ctx, opt, wo); err != nil {
		t.Fatal(err)
	}

	// Writing parameters: the remote model takes the local one's values
	// after a change.
	vals, err := want.ReadParams(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals[0].Data {
		vals[0].Data[i] ^= 1
	}
	if err := want.WriteParams(ctx, vals[:1]); err != nil {
		t.Fatal(err)
	}
	if err := got.WriteParams(ctx, vals[:1]); err != nil {
		t.Fatal(err)
	}
	sameParams(t, "written", want, got)

	// Saving: the same files (a plugin's model writes them itself).
	dirs := [2]string{t.TempDir(), t.TempDir()}
	for i, m := range []api.Model{want, got} {
		if err := checkpoint.SaveModelAs(ctx, dirs[i], m, api.BF16); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{checkpoint.ConfigFileName, checkpoint.SingleFileName} {
		w, err := os.ReadFile(filepath.Join(dirs[0], name))
		if err != nil {
			t.Fatal(err)
		}
		g, err := os.ReadFile(filepath.Join(dirs[1], name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w, g) {
			t.Errorf("saved %s differs", name)
		}
	}
}

// checkPacked checks variable-length and packed batches through got, when
// want takes them (Info.Packed): got says it does too, its Forward of
// sequences of different lengths is what each sequence gives alone
// (modeltest.CheckPacked) and want's, bit for bit, in every form; and a
// training step of rows of different lengths with document starts
// (api.Batch.Starts) gives what want's gives, through wst and gst, the
// models' steppers, which it steps.
func checkPacked(t *testing.T, want, got api.Model, wst, gst api.TrainStepper) {
	ctx := t.Context()
	wi, gi := want.Info(), got.Info()
	if wi.Packed != gi.Packed {
		t.Fatalf("Info.Packed is %v, the in-process model's %v", gi.Packed, wi.Packed)
	}
	if !wi.Packed {
		t.Skipf("%s models do not take packed batches (Info.Packed)", wi.Arch)
	}
	modeltest.CheckPacked(t, got)
	V := want.Config().Vocab()
	ids := [][]int32{{1, 2, 3, 4, 5, 6, 7}, {int32(V - 1)}, {8, 9, 10}, {11, 12, 13, 14, 15, 16, 17}}
	for _, mode := range wi.Modes {
		f := api.Form{Mode: mode, Chunk: 3}
		w, err := want.Forward(ctx, ids, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Forward(ctx, ids, f)
		if err != nil {
			t.Fatal(err)
		}
		sameTensor(t, fmt.Sprintf("forward %s of sequences of different lengths", mode), w, g)
	}
	if !wi.Trainable {
		return
	}
	req := api.TrainStepRequest{Optimizer: train.DefaultOptimizer(), LR: 3e-3, ClipNorm: 0.5}
	req.Batches = []api.Batch{
		{Inputs: [][]int32{{1, 2, 3, 4, 5, 6}, {7, 8, 9}}, Targets: [][]int32{{2, 3, 4, 5, 6, 7}, {8, api.IgnoreIndex, 10}}, Starts: [][]int{{2, 5}, {1}}},
		{Inputs: [][]int32{{3, 1, 4, 1, 5}, {9, 2, 6, 5, 3}}, Targets: [][]int32{{1, 4, 1, 5, 9}, {2, 6, 5, 3, 5}}, Starts: [][]int{nil, {3}}},
		{Inputs: [][]int32{{2, 7}, {1, 8, 2, 8}}, Targets: [][]int32{{7, 1}, {8, 2, 8, 1}}},
	}
	w, err := wst.TrainStep(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gst.TrainStep(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if w != g {
		t.Errorf("train step of packed batches: %+v, want %+v", g, w)
	}
	sameParams(t, "trained on packed batches", want, got)
}

// checkSnapshots checks got's state snapshots against want's: ws and gs
// are states of want and got that have consumed the same tokens. Their
// snapshots must be the same (batch, tokens, tensors bit for bit), as must
// the models' identities (api.Identity); a copy of gs (api.CopyState), a
// state restored from gs's snapshot and one restored from ws's (a
// snapshot taken in process restores into got) must continue as gs does,
// bit for bit; a snapshot of another batch or with a tensor missing is
// refused (api.ErrShape). ws and gs are stepped on.
// checkVerify runs densessm verify's checks (verify.Run) on got: its forms
// agree with its parallel form, and a snapshot restored continues exactly
// (skipped when it has no snapshots).
func checkVerify(t *testing.T, got api.Model) {
	o := verify.DefaultOptions()
	o.Tokens = 16
	r, err := verify.Run(t.Context(), got, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Checks {
		if !c.Pass {
			t.Errorf("%s: largest logit difference %.3g of %.3g (tolerance %.3g) %s", c.Name, c.MaxDiff, c.Scale, c.Tol, c.Note)
		}
	}
}

func checkSnapshots(t *testing.T, want, got api.Model, ws, gs api.State) {
	ctx := t.Context()
	wsv, wantSaves := want.(api.StateSaver)
	gsv, gotSaves := got.(api.StateSaver)
	var gSnap api.StateSnapshot
	var err error
	if gotSaves {
		gSnap, err = gsv.SaveState(ctx, gs)
	}
	if !gotSaves || errors.Is(err, api.ErrUnsupported) {
		if wantSaves {
			t.Fatalf("the model does not save its states (%v), the in-process model does", err)
		}
		t.Skipf("%s models do not save their states (api.StateSaver): no state snapshots to check", want.Info().Arch)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !wantSaves {
		t.Fatalf("the model saves its states, the in-process model does not")
	}
	wSnap, err := wsv.SaveState(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "snapshot", wSnap, gSnap)
	if gSnap.Batch != gs.Batch() || gSnap.Tokens != gs.Len() || len(gSnap.Tensors) == 0 {
		t.Fatalf("snapshot of %d sequences at %d tokens (%d tensors), want %d at %d", gSnap.Batch, gSnap.Tokens, len(gSnap.Tensors), gs.Batch(), gs.Len())
	}

	wid, err := api.Identity(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := api.Identity(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if wid.Arch != gid.Arch || wid.ConfigHash != gid.ConfigHash || wid.WeightsHash != gid.WeightsHash {
		t.Errorf("identity %s %.12s %.12s, want the in-process model's %s %.12s %.12s",
			gid.Arch, gid.ConfigHash, gid.WeightsHash, wid.Arch, wid.ConfigHash, wid.WeightsHash)
	}
	wStamped, err := api.Snapshot(ctx, want, ws, wid)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := api.CopyState(ctx, got, gs)
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	restored, err := api.Restore(ctx, got, wStamped, gid)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	loaded, err := got.NewState(gs.Batch())
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if err := gsv.LoadState(ctx, loaded, gSnap); err != nil {
		t.Fatal(err)
	}
	for _, s := range []api.State{copied, restored, loaded} {
		if s.Len() != gs.Len() || s.Batch() != gs.Batch() {
			t.Fatalf("a copied or restored state of %d sequences at %d tokens, want %d at %d", s.Batch(), s.Len(), gs.Batch(), gs.Len())
		}
	}
	V := want.Config().Vocab()
	B := gs.Batch()
	for i := range 3 {
		next := make([]int32, B)
		for b := range next {
			next[b] = int32((7*i + 3*b + 1) % V)
		}
		w, err := want.Step(ctx, ws, next)
		if err != nil {
			t.Fatal(err)
		}
		for j, s := range []api.State{gs, copied, restored, loaded} {
			g, err := got.Step(ctx, s, next)
			if err != nil {
				t.Fatal(err)
			}
			what := []string{"the original state", "a copy (api.CopyState)", "a state restored from the in-process snapshot", "a state loaded from its snapshot"}[j]
			sameTensor(t, fmt.Sprintf("step %d after a snapshot, of %s", i, what), w, g)
		}
	}
	now, err := gsv.SaveState(ctx, gs)
	if err != nil {
		t.Fatal(err)
	}
	after, err := gsv.SaveState(ctx, loaded)
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "the loaded state's snapshot after the same steps", now, after)

	// Refusals.
	wide, err := got.NewState(B + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	if err := gsv.LoadState(ctx, wide, gSnap); !errors.Is(err, api.ErrShape) {
		t.Errorf("a snapshot into a state of another batch: %v, want an error wrapping api.ErrShape", err)
	}
	missing := gSnap
	missing.Tensors = gSnap.Tensors[1:]
	if err := gsv.LoadState(ctx, loaded, missing); !errors.Is(err, api.ErrShape) {
		t.Errorf("a snapshot without its first tensor: %v, want an error wrapping api.ErrShape", err)
	}
}

// sameSnapshot checks that two snapshots hold the same contents, bit for
// bit.
func sameSnapshot(t *testing.T, what string, want, got api.StateSnapshot) {
	t.Helper()
	if got.Batch != want.Batch || got.Tokens != want.Tokens || len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%s: %d sequences at %d tokens (%d tensors), want %d at %d (%d tensors)",
			what, got.Batch, got.Tokens, len(got.Tensors), want.Batch, want.Tokens, len(want.Tensors))
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("%s: tensor %d is %s %s%v, want %s %s%v (or its values differ)", what, i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
	}
}

func sameParams(t *testing.T, what string, want, got api.Model) {
	t.Helper()
	w, err := want.ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != len(g) {
		t.Fatalf("%s: %d parameters, want %d", what, len(g), len(w))
	}
	for i := range w {
		if w[i].Name != g[i].Name || !bytes.Equal(w[i].Data, g[i].Data) {
			t.Fatalf("%s: parameter %s differs", what, w[i].Name)
		}
	}
}

func sameTensor(t *testing.T, what string, want, got api.Tensor) {
	t.Helper()
	if !want.Shape().Equal(got.Shape()) || !bytes.Equal(tensorBytes(want), tensorBytes(got)) {
		t.Fatalf("%s: logits %v differ from the in-process %v", what, got.Shape(), want.Shape())
	}
}

// tensorBytes returns an F32 tensor's elements as bytes.
func tensorBytes(t api.Tensor) []byte {
	raw := make([]byte, t.DType().Bytes(t.Shape().NumElements()))
	t.Backend().Download(raw, t)
	return raw
}

// must returns v, failing on err as a panic (a model call the suite has
// just made work).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
