package kernels

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestConvGradWGeometry checks ds_causal_conv1d_grad_w_f32's launch: every
// channel and tap (and the bias) has a block, within the device's limits,
// and ConvGradRows is conv.cu's DS_CONV_GRAD_ROWS, a power of two.
func TestConvGradWGeometry(t *testing.T) {
	for _, c := range []struct{ C, K int }{{1, 1}, {31, 4}, {32, 4}, {33, 1}, {1536, 4}, {0, 3}, {5, 65534}} {
		g, err := ConvGradWGeometry(c.C, c.K)
		if err != nil {
			t.Fatalf("C = %d, K = %d: %v", c.C, c.K, err)
		}
		threads := g.Block.X * g.Block.Y * g.Block.Z
		if g.Block.X != 32 || g.Block.Y != ConvGradRows || threads > 1024 || threads%32 != 0 {
			t.Errorf("C = %d, K = %d: block %+v", c.C, c.K, g.Block)
		}
		if int(g.Grid.X)*32 < c.C || int(g.Grid.X) > max((c.C+31)/32, 1) || int(g.Grid.Y) != c.K+1 || g.Grid.Z != 1 {
			t.Errorf("C = %d, K = %d: grid %+v", c.C, c.K, g.Grid)
		}
		if shared := 8 * 32 * ConvGradRows; g.Shared != 0 || shared > 48<<10 {
			t.Errorf("C = %d, K = %d: shared %d dynamic, %d static", c.C, c.K, g.Shared, shared)
		}
	}
	for _, K := range []int{0, 65535} {
		if _, err := ConvGradWGeometry(4, K); !errors.Is(err, api.ErrUnsupported) {
			t.Errorf("K = %d: %v", K, err)
		}
	}
	if ConvGradRows&(ConvGradRows-1) != 0 {
		t.Errorf("ConvGradRows = %d is not a power of two", ConvGradRows)
	}
	for _, s := range Sources() {
		if s.Name == "conv.cu" && !strings.Contains(s.Code, fmt.Sprintf("#define DS_CONV_GRAD_ROWS %d\n", ConvGradRows)) {
			t.Errorf("conv.cu does not define DS_CONV_GRAD_ROWS as %d", ConvGradRows)
		}
	}
}
