package generate

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// hidden is a model without its optional methods (no PrefillLast): the
// generic path.
type hidden struct{ api.Model }

// TestPrefillLastLongPrompt prefills two prompts of 1100 tokens (three
// windows) with PrefillLast on a tiny Mamba, through the model's
// PrefillLast and through Prefill, and checks both against the last row of
// Forward's logits; then that Generate decodes the same tokens either way.
func TestPrefillLastLongPrompt(t *testing.T) {
	m := tinyMamba(t, 2)
	if _, ok := m.(LastLogitsPrefiller); !ok {
		t.Fatal("the Mamba model has no PrefillLast")
	}
	const B, T = 2, 1100
	V := m.Config().Vocab()
	r := rand.New(rand.NewPCG(1, 2))
	prompts := make([][]int32, B)
	for b := range prompts {
		for range T {
			prompts[b] = append(prompts[b], int32(r.IntN(V)))
		}
	}
	ctx := context.Background()
	full, err := m.Forward(ctx, prompts, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	all := api.Float32s(full)
	var want []float32
	for b := range B {
		want = append(want, all[(b*T+T-1)*V:(b*T+T)*V]...)
	}
	for _, mm := range []api.Model{m, hidden{m}} {
		s, err := mm.NewState(B)
		if err != nil {
			t.Fatal(err)
		}
		got, err := PrefillLast(ctx, mm, s, prompts)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Shape().Equal(api.Shape{B, V}) {
			t.Fatalf("%T: shape %v, want [%d %d]", mm, got.Shape(), B, V)
		}
		if d := maxRelDiff(api.Float32s(got), want); d > 1e-4 {
			t.Errorf("%T: last logits differ from Forward's by %.3g", mm, d)
		}
		if s.Len() != T {
			t.Errorf("%T: the state holds %d tokens, want %d", mm, s.Len(), T)
		}
	}
	o := DefaultOptions()
	o.MaxTokens = 8
	withLast, without := gen(t, m, prompts, o), gen(t, hidden{m}, prompts, o)
	for b := range B {
		if !slices.Equal(withLast[b], without[b]) {
			t.Errorf("sequence %d: %v with PrefillLast, %v without", b, withLast[b], without[b])
		}
	}
	s, _ := m.NewState(1)
	if _, err := PrefillLast(ctx, m, s, [][]int32{{}}); err == nil {
		t.Error("PrefillLast of no tokens: no error")
	}
}

// maxRelDiff returns max|got-want| / max|want|.
func maxRelDiff(got, want []float32) float64 {
	var d, scale float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return d / scale
}
