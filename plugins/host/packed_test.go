package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/train"
)

// TestUnpackedPlugin: a plugin whose model does not take packed batches
// (ModelInfo.packed false, as from a plugin built before them) runs a
// Forward of sequences of different lengths one length at a time
// (api.ForwardEach), and a train step with rows of different lengths or
// document starts is refused (api.ErrUnsupported) before anything is sent;
// a batch whose starts are all empty is an ordinary batch.
func TestUnpackedPlugin(t *testing.T) {
	t.Setenv("DENSESSM_FAULT", "unpacked")
	p := openPlugin(t, "densessm-plugin-faulty", testOptions(t))
	m := faultyModel(t, p)
	defer m.Close()
	if m.Info().Packed {
		t.Fatal("the plugin's model says it takes packed batches")
	}
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig([]byte(tinyConfigs["mamba"]))
	if err != nil {
		t.Fatal(err)
	}
	local, err := arch.New(t.Context(), cfg, api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 1}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ragged := [][]int32{{1, 2, 3, 4, 5}, {6, 7}, {8, 9, 10, 11, 12}, {13}}
	for _, f := range []api.Form{{}, {Mode: api.Chunkwise, Chunk: 2}, {Mode: api.Recurrent}} {
		got, err := m.Forward(t.Context(), ragged, f)
		if err != nil {
			t.Fatalf("%s: %v", f.Mode, err)
		}
		want, err := api.ForwardEach(t.Context(), local, ragged, f)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Shape().Equal(api.Shape{4, 5, 64}) || !slices.Equal(api.Float32s(got), api.Float32s(want)) {
			t.Errorf("%s: logits %v of sequences of different lengths differ from the in-process model's, one length at a time", f.Mode, got.Shape())
		}
	}

	// A Prefill of sequences of different lengths is refused before
	// anything is sent, as is one of their last logits, whatever the plugin.
	s, err := m.NewState(len(ragged))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = m.Prefill(t.Context(), s, ragged, api.Form{})
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "packed") || !strings.Contains(err.Error(), "different lengths") {
		t.Errorf("a prefill of sequences of different lengths: %v, want an error wrapping api.ErrUnsupported that names them and packed batches", err)
	}
	_, err = m.(*Model).PrefillLast(t.Context(), s, ragged, api.Form{})
	wantKind(t, "the last logits of a prefill of sequences of different lengths", err, api.ErrShape)
	if s.Len() != 0 || !slices.Equal(api.StateLens(s), []int{0, 0, 0, 0}) {
		t.Errorf("after refused prefills the state is at %v tokens", api.StateLens(s))
	}
	if _, err := m.Prefill(t.Context(), s, [][]int32{{1, 2}, {3, 4}, {5, 6}, {7, 8}}, api.Form{}); err != nil || s.Len() != 2 {
		t.Errorf("a prefill of sequences of one length after the refusals: %v, the state at %d tokens", err, s.Len())
	}

	req := api.TrainStepRequest{Optimizer: train.DefaultOptimizer(), LR: 1e-3}
	plain := api.Batch{Inputs: [][]int32{{1, 2, 3, 4}, {5, 6, 7, 8}}, Targets: [][]int32{{2, 3, 4, 5}, {6, 7, 8, 9}}}
	for what, b := range map[string]api.Batch{
		"document starts":             {Inputs: plain.Inputs, Targets: plain.Targets, Starts: [][]int{{2}, nil}},
		"rows of different lengths":   {Inputs: [][]int32{{1, 2, 3, 4}, {5}}, Targets: [][]int32{{2, 3, 4, 5}, {6}}},
		"both, in a second batch too": {Inputs: [][]int32{{1, 2, 3, 4}, {5, 6}}, Targets: [][]int32{{2, 3, 4, 5}, {6, 7}}, Starts: [][]int{nil, {1}}},
	} {
		req.Batches = []api.Batch{plain, b}
		_, err := m.(api.TrainStepper).TrainStep(t.Context(), req)
		if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "packed") || !strings.Contains(err.Error(), "batch 1") {
			t.Errorf("a train step with %s: %v, want an error wrapping api.ErrUnsupported that names batch 1 and packed batches", what, err)
		}
	}
	if _, err := m.(api.TrainStepper).TrainStep(t.Context(), api.TrainStepRequest{Optimizer: req.Optimizer, Batches: []api.Batch{{Inputs: [][]int32{{1}}, Targets: [][]int32{{1, 2}}}}}); !errors.Is(err, api.ErrShape) {
		t.Errorf("targets of another length: %v, want api.ErrShape", err)
	}
	if st, err := m.(api.TrainStepper).OptimizerState(t.Context()); err != nil || st.Steps != 0 {
		t.Fatalf("after refused steps, the optimizer has taken %d steps (%v)", st.Steps, err)
	}

	// Starts that are all empty: an ordinary batch, as in process.
	req.Batches = []api.Batch{plain, {Inputs: plain.Inputs, Targets: plain.Targets, Starts: [][]int{nil, {}}}}
	got, err := m.(api.TrainStepper).TrainStep(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	st, err := train.Stepper(local)
	if err != nil {
		t.Fatal(err)
	}
	want, err := st.TrainStep(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("train step %+v, in process %+v", got, want)
	}
}

// TestRaggedPrefillThroughPlugin: a Prefill of sequences of different
// lengths through a packed plugin gives the in-process model's logits, bit
// for bit, and the host's state counts each sequence's tokens as the
// plugin's does (api.StateLens) through Steps, a second Prefill, snapshots
// (whose lens are checked both ways: api.ErrCorrupt) and Reset; their last
// logits alone are refused (api.ErrShape), whether or not the plugin
// answers PrefillRequest.last, leaving the state as it was.
func TestRaggedPrefillThroughPlugin(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	ctx := t.Context()
	for _, name := range []string{"mamba", "retnet"} {
		m := pluginModel(t, p, name, tinyConfigs[name], 3)
		if !m.Info().Packed {
			t.Fatalf("%s: the plugin's model is not packed", name)
		}
		arch, err := api.LookupArchitecture(name)
		if err != nil {
			t.Fatal(err)
		}
		local, err := arch.New(ctx, m.Config(), api.BuildOptions{Backend: "cpu", BackendOptions: api.BackendOptions{Threads: 2}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		ls, err := local.NewState(3)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewState(3)
		if err != nil {
			t.Fatal(err)
		}
		// same runs f on the local state and the plugin's and compares
		// their logits and lens.
		same := func(what string, lens []int, f func(m api.Model, s api.State) (api.Tensor, error)) {
			t.Helper()
			want, err := f(local, ls)
			if err != nil {
				t.Fatalf("%s: %s in process: %v", name, what, err)
			}
			got, err := f(m, s)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, what, err)
			}
			if !got.Shape().Equal(want.Shape()) || !slices.Equal(api.Float32s(got), api.Float32s(want)) {
				t.Errorf("%s: %s: logits %v differ from the in-process model's %v", name, what, got.Shape(), want.Shape())
			}
			if !slices.Equal(api.StateLens(s), lens) || !slices.Equal(api.StateLens(ls), lens) || s.Len() != slices.Max(lens) {
				t.Fatalf("%s: %s: the state at %v tokens (Len %d), in process %v; want %v", name, what, api.StateLens(s), s.Len(), api.StateLens(ls), lens)
			}
		}
		prefill := func(ids [][]int32) func(m api.Model, s api.State) (api.Tensor, error) {
			return func(m api.Model, s api.State) (api.Tensor, error) { return m.Prefill(ctx, s, ids, api.Form{}) }
		}
		step := func(m api.Model, s api.State) (api.Tensor, error) { return m.Step(ctx, s, []int32{7, 8, 9}) }
		same("a prefill of sequences of different lengths", []int{4, 1, 2}, prefill([][]int32{{1, 2, 3, 4}, {5}, {6, 7}}))
		same("a step after it", []int{5, 2, 3}, step)
		for _, announced := range []bool{true, false} {
			m.last = announced
			_, err := m.PrefillLast(ctx, s, [][]int32{{1, 2}, {3}, {4}}, api.Form{})
			wantKind(t, "the last logits of a prefill of sequences of different lengths", err, api.ErrShape)
		}
		m.last = true
		if !slices.Equal(api.StateLens(s), []int{5, 2, 3}) {
			t.Fatalf("%s: after refused prefills the state is at %v tokens", name, api.StateLens(s))
		}
		same("a second prefill of sequences of different lengths", []int{6, 5, 5}, prefill([][]int32{{1}, {2, 3, 4}, {5, 6}}))
		same("a prefill of sequences of one length", []int{8, 7, 7}, prefill([][]int32{{1, 2}, {3, 4}, {5, 6}}))

		snap, err := m.SaveState(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Tokens != 8 || !slices.Equal(snap.Lens, []int{8, 7, 7}) {
			t.Fatalf("%s: a snapshot of a state at 8, 7 and 7 tokens: %d tokens, lens %v", name, snap.Tokens, snap.Lens)
		}
		c, err := m.NewState(3)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadState(ctx, c, snap); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(api.StateLens(c), []int{8, 7, 7}) || c.Len() != 8 {
			t.Fatalf("%s: a state loaded from a snapshot at 8, 7 and 7 tokens is at %v", name, api.StateLens(c))
		}
		if back, err := m.SaveState(ctx, c); err != nil || back.Tokens != 8 || !slices.Equal(back.Lens, snap.Lens) {
			t.Fatalf("%s: the plugin's loaded state saves as %d tokens, lens %v (%v)", name, back.Tokens, back.Lens, err)
		}
		stepAll(t, m, [][]int32{{1, 2, 3}, {4, 5, 6}}, s, c)
		for _, lens := range [][]int{{10, 9}, {10, 9, 9, 9}, {9, 9, 8}, {11, 9, 9}, {10, -1, 9}} {
			bad := snap
			bad.Tokens, bad.Lens = 10, lens
			wantKind(t, fmt.Sprintf("a snapshot at 10 tokens with lens %v", lens), m.LoadState(ctx, c, bad), api.ErrCorrupt)
		}
		if !slices.Equal(api.StateLens(c), []int{10, 9, 9}) {
			t.Fatalf("%s: after refused loads the state is at %v tokens", name, api.StateLens(c))
		}
		uniform := snap
		uniform.Lens = []int{8, 8, 8}
		if err := m.LoadState(ctx, c, uniform); err != nil {
			t.Fatal(err)
		}
		if l, ok := c.(api.SequenceLens); !ok || !slices.Equal(l.Lens(), []int{8, 8, 8}) || c.Len() != 8 {
			t.Fatalf("%s: a state loaded from a snapshot with lens 8, 8, 8 is at %v", name, api.StateLens(c))
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(api.StateLens(s), []int{0, 0, 0}) || s.Len() != 0 {
			t.Fatalf("%s: a state after Reset is at %v tokens", name, api.StateLens(s))
		}
		if snap, err := m.SaveState(ctx, s); err != nil || snap.Tokens != 0 || snap.Lens != nil {
			t.Fatalf("%s: a snapshot after Reset: %d tokens, lens %v (%v)", name, snap.Tokens, snap.Lens, err)
		}
	}
}

// TestStateCounts: the host's count of each sequence's tokens follows the
// plugin's answers (the most any sequence has); an answer that does not
// agree with what the host sent is api.ErrCorrupt, and the plugin's count
// stands.
func TestStateCounts(t *testing.T) {
	st := &State{m: &Model{p: &Plugin{Path: "fake"}}, batch: 3}
	if err := st.advance(4, []int{4, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := st.stepped(5); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Lens(), []int{5, 2, 3}) || st.Len() != 5 {
		t.Fatalf("after a step the state is at %v tokens (Len %d), want 5, 2, 3", st.Lens(), st.Len())
	}
	lens := st.Lens()
	lens[0] = 99
	if st.Lens()[0] != 5 {
		t.Fatal("Lens returns the state's own slice")
	}
	wantKind(t, "a step the plugin counts as two", st.stepped(7), api.ErrCorrupt)
	if !slices.Equal(st.Lens(), []int{7, 7, 7}) || st.Len() != 7 {
		t.Fatalf("after a step that disagrees the state is at %v tokens (Len %d), want the plugin's 7", st.Lens(), st.Len())
	}
	if err := st.advance(9, []int{9, 9, 9}); err != nil || st.lens != nil {
		t.Fatalf("sequences that have all consumed 9 tokens: %v, lens %v", err, st.lens)
	}
	if err := st.stepped(10); err != nil || st.Len() != 10 {
		t.Fatalf("a step of a state whose sequences agree: %v, Len %d", err, st.Len())
	}
}
