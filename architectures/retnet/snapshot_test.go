package retnet

import (
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStateSnapshots checks saving, writing, reading, restoring and
// copying states of every variant (modeltest.CheckStateSnapshots).
func TestStateSnapshots(t *testing.T) {
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 2})
			m, err := New(cfg, b, 5)
			if err != nil {
				t.Fatal(err)
			}
			other, err := New(cfg, b, 6)
			if err != nil {
				t.Fatal(err)
			}
			ids := modeltest.RandomIDs(rand.New(rand.NewPCG(3, 4)), 2, 12, cfg.VocabSize)
			modeltest.CheckStateSnapshots(t, m, other, ids)
		})
	}
}
