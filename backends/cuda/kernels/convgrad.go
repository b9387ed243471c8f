package kernels

import (
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// ConvGradRows is conv.cu's DS_CONV_GRAD_ROWS: the rows (threadIdx.y) of a
// block of ds_causal_conv1d_grad_w_f32, each summing every ConvGradRows-th
// time step of its channel before the block adds them by halving.
const ConvGradRows = 16

// ConvGradWGeometry is the launch of ds_causal_conv1d_grad_w_f32 for C
// channels and K taps: blocks of 32 channels by ConvGradRows rows, a grid
// of ceil(C/32) channel tiles by K+1 (the taps, then the bias). Its 4 KiB
// of shared memory is static. K+1 above the grid's 65535 rows is
// api.ErrUnsupported.
func ConvGradWGeometry(C, K int) (Geometry, error) {
	if K < 1 || K+1 > 65535 || C < 0 || C > 1<<31-1 {
		return Geometry{}, fmt.Errorf("%w: a causal convolution's weight gradient with C = %d, K = %d (the CUDA kernel takes K up to 65534)",
			api.ErrUnsupported, C, K)
	}
	return Geometry{
		Grid:  driver.Dim3{X: uint32(max((C+31)/32, 1)), Y: uint32(K + 1), Z: 1},
		Block: driver.Dim3{X: 32, Y: ConvGradRows, Z: 1},
	}, nil
}
