// rmsnorm.cu: api.Kernels.RMSNorm,
//	dst = x * rsqrt(mean(x^2) + eps) * w   over the last axis,
// as the CPU backend computes it: the mean of squares accumulated in double,
// the scale 1/sqrt(mean + eps) in double, each product rounded once to float.
#include "common.cuh"

// One block per row (grid.x = rows); blockDim.x a multiple of 32. w may be
// null (no weight). dst may be x.
extern "C" __global__ void ds_rmsnorm_f32(float* dst, const float* x, const float* w, int D, float eps) {
	const long long row = blockIdx.x;
	const float* xr = x + row * D;
	float* dr = dst + row * D;
	double ss = 0.0;
	for (int j = threadIdx.x; j < D; j += blockDim.x) {
		const double v = xr[j];
		ss += v * v;
	}
	ss = ds_block_sum(ss);
	const double inv = 1.0 / sqrt(ss / D + (double)eps);
	for (int j = threadIdx.x; j < D; j += blockDim.x) {
		const double v = (double)xr[j] * inv;
		dr[j] = w ? (float)(v * (double)w[j]) : (float)v;
	}
}
