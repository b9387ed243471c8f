package retnet

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestEntryPointErrors checks that bad input to each entry point is an
// error of the right class, never a panic, and leaves a State as it was.
func TestEntryPointErrors(t *testing.T) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	m := newTestModel(t, tinyConfig(NameDenseRetNet, 1), b, 1)
	other := newTestModel(t, tinyConfig(NameDenseRetNet, 1), b, 1)
	s, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.NewState(2)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	check := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
	}
	_, err = m.Prefill(ctx, s, [][]int32{{1, 2}, {3}}, api.Form{Mode: api.Recurrent})
	check("recurrent prefill of different lengths", err, api.ErrShape)
	_, err = m.PrefillLast(ctx, s, [][]int32{{1, 2}, {3}}, api.Form{})
	check("last logits of different lengths", err, api.ErrShape)
	_, err = m.Forward(ctx, [][]int32{{1, 2}, {}}, api.Form{})
	check("empty sequence", err, api.ErrShape)
	_, err = m.Forward(ctx, nil, api.Form{})
	check("empty batch", err, api.ErrShape)
	_, err = m.Forward(ctx, [][]int32{{1, 53}}, api.Form{})
	check("id past the vocabulary", err, api.ErrOutOfRange)
	_, err = m.ForwardChunkwise(ctx, [][]int32{{1, 2}}, 0)
	check("chunk 0", err, api.ErrOutOfRange)
	_, err = m.Forward(cancelled, [][]int32{{1, 2}}, api.Form{})
	check("cancelled forward", err, context.Canceled)
	_, err = m.Prefill(ctx, foreign, [][]int32{{1}, {2}}, api.Form{})
	check("another model's state", err, api.ErrShape)
	_, err = m.Prefill(ctx, s, [][]int32{{1}}, api.Form{})
	check("batch of 1 for a state of 2", err, api.ErrShape)
	_, err = m.Prefill(cancelled, s, [][]int32{{1, 2}, {3, 4}}, api.Form{})
	check("cancelled prefill", err, context.Canceled)
	_, err = m.Step(ctx, s, []int32{1, -1})
	check("negative id", err, api.ErrOutOfRange)
	_, err = m.Step(ctx, foreign, []int32{1, 2})
	check("step on another model's state", err, api.ErrShape)
	_, err = m.NewState(0)
	check("state for no sequence", err, api.ErrShape)
	if s.Len() != 0 {
		t.Errorf("failed calls advanced the state to %d", s.Len())
	}
	_, err = m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1}}})
	check("short targets", err, api.ErrShape)
	_, err = m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, 99}}})
	check("target past the vocabulary", err, api.ErrOutOfRange)
	for _, starts := range [][]int{{0}, {2}, {1, 1}} {
		_, err = m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, 2}}, Starts: [][]int{starts}})
		check(fmt.Sprintf("document starts %v", starts), err, api.ErrShape)
	}
	_, err = m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, 2}}, Starts: [][]int{nil, nil}})
	check("starts for two rows of one", err, api.ErrShape)
}

// TestStateReset checks that a reset State decodes as a new one.
func TestStateReset(t *testing.T) {
	ctx := context.Background()
	m := newTestModel(t, tinyConfig(NameRetNet, 0), cpu.New(api.BackendOptions{Threads: 1}), 2)
	s, _ := m.NewState(1)
	first, err := m.Prefill(ctx, s, [][]int32{{4, 8, 15}}, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	want := api.Float32s(first)
	s.Reset()
	if s.Len() != 0 {
		t.Fatalf("Len %d after Reset", s.Len())
	}
	again, err := m.Prefill(ctx, s, [][]int32{{4, 8, 15}}, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	if e := modeltest.RelErr(api.Float32s(again), want); e != 0 {
		t.Errorf("logits after Reset differ by %g", e)
	}
}
