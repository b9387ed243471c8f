package kernels

import (
	"errors"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestScanGradGeometry checks the backward scan's launch for every N it
// takes over a range of T: the forward's block and grid, the shared memory
// within 48 KiB and laid out as the kernel reads it, and K near sqrt(T).
func TestScanGradGeometry(t *testing.T) {
	for N := 0; N <= 256; N++ {
		for _, T := range []int{0, 1, 2, 5, 37, 100, 1000, 4096, 100_000} {
			g, K, err := ScanGradGeometry(3, T, 100, N)
			if err != nil {
				t.Fatal(err)
			}
			f, _, _ := ScanGeometry(3, 100, max(N, 1))
			if g.Block != f.Block || g.Grid != f.Grid {
				t.Fatalf("N = %d: %+v, the forward's %+v", N, g, f)
			}
			ch := int(g.Block.Y)
			if K < 1 || g.Shared > 48<<10 || int(g.Shared) != 2*ch*N*8+2*K*N*4 {
				t.Fatalf("N = %d, T = %d: K = %d, %+v", N, T, K, g)
			}
			// About sqrt(T), unless the shared memory is the limit.
			if K*K < T && 2*ch*N*8+2*(K+1)*N*4 <= 48<<10 || (K-1)*(K-1) >= max(T, 1) {
				t.Fatalf("N = %d, T = %d: K = %d", N, T, K)
			}
		}
	}
	if _, _, err := ScanGradGeometry(1, 1, 1, 257); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("N = 257: %v", err)
	}
}
