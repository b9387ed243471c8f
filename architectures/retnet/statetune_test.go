package retnet

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStateTuning checks the learnable initial state of every variant
// (modeltest.CheckStateTuning).
func TestStateTuning(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), 5)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckStateTuning(t, m)
		})
	}
}
