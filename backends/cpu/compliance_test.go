package cpu_test

import (
	"strconv"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestCompliance runs the backend compliance suite with one and three
// threads (three does not divide most sizes, which exercises the splits).
func TestCompliance(t *testing.T) {
	for _, threads := range []int{1, 3} {
		t.Run("threads="+strconv.Itoa(threads), func(t *testing.T) {
			backendtest.Run(t, cpu.New(api.BackendOptions{Threads: threads}))
		})
	}
}
