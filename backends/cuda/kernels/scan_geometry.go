package kernels

import (
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
)

// ScanGradGeometry is the launch of ds_selective_scan_grad_f32 for B rows,
// T tokens, E channels and N states (0 to 256). The block and grid are
// ds_selective_scan_f32's (ScanGeometry: L lanes a channel, 128/L channels
// a block, one block a batch row and channel group). K, returned (the
// kernel's last argument), is the length of the chunks of time between the
// checkpointed states: about sqrt(T), which balances the checkpoints
// ([B, ceil(T/K), E, N] floats) against one chunk's recomputed states
// ([B, K, E, N]), at most what the shared memory holds. The dynamic shared
// memory is two double buffers of [channels a block][N] (each token's
// terms of dBm and dCm, summed over the block's channels) and two float
// buffers of [K][N] (the chunk's Bm and Cm), within 48 KiB.
func ScanGradGeometry(B, T, E, N int) (g Geometry, K int, err error) {
	if N < 0 || N > 32*scanMaxStates {
		return Geometry{}, 0, fmt.Errorf("%w: the gradient of a selective scan of %d states (the CUDA kernel takes 0 to %d)",
			api.ErrUnsupported, N, 32*scanMaxStates)
	}
	g, _, err = ScanGeometry(B, E, max(N, 1))
	if err != nil {
		return Geometry{}, 0, err
	}
	red := 2 * int(g.Block.Y) * N * 8
	K = max(int(math.Ceil(math.Sqrt(float64(T)))), 1)
	if N > 0 {
		K = min(K, ((48<<10)-red)/(2*N*4))
	}
	g.Shared = uint32(red + 2*K*N*4)
	return g, K, nil
}
