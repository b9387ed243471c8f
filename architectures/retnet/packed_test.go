package retnet

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestPackedAndStateTuning checks variable-length and packed batches
// against their sequences and documents run alone (modeltest.CheckPacked)
// and the learnable initial state (modeltest.CheckStateTuning) on every
// variant.
func TestPackedAndStateTuning(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), 5)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("packed", func(t *testing.T) { modeltest.CheckPacked(t, m) })
			t.Run("state tuning", func(t *testing.T) { modeltest.CheckStateTuning(t, m) })
		})
	}
}
