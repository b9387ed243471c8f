package eval

import (
	"context"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
)

// hidden hides every capability of a model but api.Model.
type hidden struct{ api.Model }

// TestChoicesShareTheContext checks that scoring continuations from one
// prefilled context state copied for each (a model with snapshots) gives
// what one Forward per continuation gives, to 1e-5 relative, and the
// same greedy flags.
func TestChoicesShareTheContext(t *testing.T) {
	c := mamba.DefaultConfig(mamba.NameDenseMamba)
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.StateSize, c.TimeStepRank = 50, 32, 2, 64, 8, 4
	m, err := mamba.New(c, cpu.New(api.BackendOptions{Threads: 1}), 3)
	if err != nil {
		t.Fatal(err)
	}
	ctxIDs := []int32{1, 7, 9, 30, 2, 2, 41, 17, 5, 8, 13}
	conts := [][]int32{{4}, {4, 9, 11}, {49, 0, 3, 3, 12, 6}}
	ll, greedy, err := choiceLogLikelihoods(context.Background(), m, ctxIDs, conts)
	if err != nil {
		t.Fatal(err)
	}
	wantLL, wantGreedy, err := choiceLogLikelihoods(context.Background(), hidden{m}, ctxIDs, conts)
	if err != nil {
		t.Fatal(err)
	}
	for j := range conts {
		if math.Abs(ll[j]-wantLL[j]) > 1e-5*math.Abs(wantLL[j]) || greedy[j] != wantGreedy[j] {
			t.Errorf("choice %d: %v %v from the shared state, %v %v per choice", j, ll[j], greedy[j], wantLL[j], wantGreedy[j])
		}
	}
	if _, _, err := choiceLogLikelihoods(context.Background(), m, ctxIDs, [][]int32{{1}, {}}); err == nil {
		t.Error("an empty continuation was scored")
	}
}
