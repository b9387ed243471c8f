package host

import (
	"errors"
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
