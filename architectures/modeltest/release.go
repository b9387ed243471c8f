package modeltest

import (
	"context"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// CheckRecycles runs pass three times, freeing its result (nil: none of
// its own) after each, and checks through the CPU backend's buffer pool
// counters that the pass frees its intermediates: every pooled allocation
// of the third run reuses a buffer (nothing new is allocated once warm),
// and every buffer it takes but its result's is handed back. values are
// the numbers to compare: the last two runs must give the same bits. With
// peakShare above 0, the most the last run holds at once must stay under
// that share of what it allocates in all (an inference pass frees each
// layer's intermediates when the layer is done). The model must be on a
// CPU backend, and no other test may use the pool meanwhile.
func CheckRecycles(t testing.TB, what string, peakShare float64, pass func() (values []float32, result api.Tensor)) {
	t.Helper()
	free := func(x api.Tensor) {
		if x != nil {
			x.Backend().Free(x)
		}
	}
	var want []float32
	for range 2 { // a training step's first run allocates the gradients, which take buffers for good
		values, first := pass()
		want = append(want[:0], values...)
		free(first)
	}
	cpu.ResetPeakLiveBytes()
	s0 := cpu.ReadPoolStats()
	got, out := pass()
	s1 := cpu.ReadPoolStats()
	if peak, total := s1.PeakLiveBytes-s0.LiveBytes, s1.AllocBytes-s0.AllocBytes; peakShare > 0 && float64(peak) > peakShare*float64(total) {
		t.Errorf("%s: %d bytes held at once of the %d allocated: over %.0f%%", what, peak, total, 100*peakShare)
	}
	allocs, reused, frees := s1.Allocs-s0.Allocs, s1.Reused-s0.Reused, s1.Frees-s0.Frees
	held := uint64(0)
	if out != nil && out.Shape().NumElements() >= 4096 { // the pool's smallest tensor
		held = 1
	}
	switch {
	case allocs == 0:
		t.Errorf("%s: no pooled allocation: the test's shapes are too small", what)
	case reused != allocs:
		t.Errorf("%s: %d of %d pooled allocations were fresh memory once warm", what, allocs-reused, allocs)
	case allocs-frees != held:
		t.Errorf("%s: %d buffers taken, %d handed back: want all but the result's (%d)", what, allocs, frees, held)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d values in the last run, %d in the one before", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v in the last run, %v in the one before", what, i, got[i], want[i])
		}
	}
	free(out)
}

// lastPrefiller is a model with PrefillLast (generate.LastLogitsPrefiller).
type lastPrefiller interface {
	api.Model
	PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error)
}

// CheckPrefillLast checks, in each of forms, that m's PrefillLast of
// prompt gives the last row of Prefill's logits, [B,V], to tol relative,
// and leaves the State where Prefill does: a Step of next after each gives
// the same logits. It also checks that a prompt of no tokens is an error.
func CheckPrefillLast(t testing.TB, m api.Model, prompt [][]int32, next []int32, forms []api.Form, tol float64) {
	t.Helper()
	lm, ok := m.(lastPrefiller)
	if !ok {
		t.Fatalf("%T has no PrefillLast", m)
	}
	B, T, V := len(prompt), len(prompt[0]), m.Config().Vocab()
	for _, f := range forms {
		full, step := prefillThenStep(t, lm, prompt, next, f, false)
		last, lastStep := prefillThenStep(t, lm, prompt, next, f, true)
		want := make([]float32, 0, B*V)
		for b := range B {
			want = append(want, full[(b*T+T-1)*V:(b*T+T)*V]...)
		}
		if len(last) != len(want) {
			t.Fatalf("%+v: PrefillLast gave %d logits, want %d", f, len(last), len(want))
		}
		if d := RelErr(last, want); d > tol {
			t.Errorf("%+v: PrefillLast differs from Prefill's last row by %.3g", f, d)
		}
		if d := RelErr(lastStep, step); d > tol {
			t.Errorf("%+v: the Step after PrefillLast differs from the one after Prefill by %.3g", f, d)
		}
	}
	s, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.PrefillLast(context.Background(), s, make([][]int32, B), api.Form{}); err == nil {
		t.Error("PrefillLast of no tokens: no error")
	}
}

// prefillThenStep prefills prompt from a new State with Prefill (or
// PrefillLast), then Steps next, and returns both logits.
func prefillThenStep(t testing.TB, m lastPrefiller, prompt [][]int32, next []int32, f api.Form, last bool) (prefill, step []float32) {
	t.Helper()
	ctx := context.Background()
	s, err := m.NewState(len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	var out api.Tensor
	if last {
		out, err = m.PrefillLast(ctx, s, prompt, f)
	} else {
		out, err = m.Prefill(ctx, s, prompt, f)
	}
	if err != nil {
		t.Fatal(err)
	}
	prefill = api.Float32s(out)
	logits, err := m.Step(ctx, s, next)
	if err != nil {
		t.Fatal(err)
	}
	return prefill, api.Float32s(logits)
}
