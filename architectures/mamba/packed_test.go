package mamba

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestPacked checks variable-length and packed batches on every variant
// against their sequences and documents run alone (modeltest.CheckPacked).
func TestPacked(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), 5)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckPacked(t, m)
		})
	}
}
