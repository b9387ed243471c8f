package modeltest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// Tolerances of a model on nn's reference kernels against the same model
// on a backend's fused kernels (CheckSameModel): both compute the same
// functions in float32 and differ by rounding alone (measured: logits and
// loss within 4e-6, gradients within 1e-5).
const (
	ReferenceLogitsTol = 1e-5
	ReferenceGradTol   = 1e-4
)

// CheckSameModel checks that got computes what want computes, within tol
// by RelErr on the logits and gradTol on the gradients: the same model with
// the same parameters on two backends, as the CPU backend (fused kernels)
// and backendtest.KernelsOnly of it (nn's references). It compares, for
// ids [B][T]: Forward in the parallel form and in each of forms; recurrent
// Steps from an empty state; a Prefill of the first split tokens followed
// by Steps; and, when both models are api.Trainable, LossAndGrad's loss
// (relative difference within tol) and every parameter's gradient on ids
// and random targets.
func CheckSameModel(t *testing.T, want, got api.Model, ids [][]int32, split int, forms []api.Form, tol, gradTol float64) {
	t.Helper()
	ctx := context.Background()
	worst := 0.0
	check := func(what string, g, w []float32) {
		t.Helper()
		e := RelErr(g, w)
		worst = max(worst, e)
		if !(e <= tol) {
			t.Errorf("%s: relative error %.3g exceeds %g", what, e, tol)
		}
	}
	for _, f := range append([]api.Form{{}}, forms...) {
		w, err := want.Forward(ctx, ids, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Forward(ctx, ids, f)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("Forward %v (chunk %d)", f.Mode, f.Chunk), api.Float32s(g), api.Float32s(w))
	}
	check("Steps", RecurrentLogits(t, got, ids), RecurrentLogits(t, want, ids))
	prefillSteps := func(m api.Model) []float32 {
		t.Helper()
		s, err := m.NewState(len(ids))
		if err != nil {
			t.Fatal(err)
		}
		head, tail := make([][]int32, len(ids)), make([][]int32, len(ids))
		for i, seq := range ids {
			head[i], tail[i] = seq[:split], seq[split:]
		}
		pre, err := m.Prefill(ctx, s, head, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		out := api.Float32s(pre)
		rest, err := api.RunRecurrent(ctx, m, s, tail)
		if err != nil {
			t.Fatal(err)
		}
		return append(out, api.Float32s(rest)...)
	}
	check("Prefill and Steps", prefillSteps(got), prefillSteps(want))
	t.Logf("logits: worst relative error %.3g", worst)

	wt, ok1 := want.(api.Trainable)
	gt, ok2 := got.(api.Trainable)
	if !ok1 || !ok2 {
		return
	}
	batch := api.Batch{Inputs: ids, Targets: RandomIDs(rand.New(rand.NewPCG(3, 4)), len(ids), len(ids[0]), want.Config().Vocab())}
	wt.ZeroGrad()
	gt.ZeroGrad()
	wl, err := wt.LossAndGrad(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := gt.LossAndGrad(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if e := math.Abs(gl-wl) / math.Abs(wl); !(e <= tol) {
		t.Errorf("loss %.7g, want %.7g: relative error %.3g exceeds %g", gl, wl, e, tol)
	}
	wg, gg := wt.Grads(), gt.Grads()
	if len(wg) != len(gg) {
		t.Fatalf("%d gradients, want %d", len(gg), len(wg))
	}
	worst, worstName := 0.0, ""
	for i, w := range wg {
		if gg[i].Name != w.Name {
			t.Fatalf("gradient %d is %s, want %s", i, gg[i].Name, w.Name)
		}
		e := RelErr(api.Float32s(gg[i].Value), api.Float32s(w.Value))
		if !(e <= gradTol) {
			t.Errorf("gradient of %s: relative error %.3g exceeds %g", w.Name, e, gradTol)
		}
		if e > worst {
			worst, worstName = e, w.Name
		}
	}
	t.Logf("loss %.7g, want %.7g; gradients: worst relative error %.3g (%s) over %d parameters", gl, wl, worst, worstName, len(wg))
}
