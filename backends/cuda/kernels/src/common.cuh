// common.cuh: helpers shared by the kernels of backends/cuda (NVRTC compiles
// each .cu file with this header; no CUDA toolkit headers are used, so the
// sources compile with libnvrtc alone).
//
// Block reductions assume blockDim.x * blockDim.y is a multiple of 32 and at
// most 1024: every lane of every warp takes part in the shuffles.
#pragma once

#define DS_FULL_MASK 0xffffffffu
#define DS_INF __int_as_float(0x7f800000) // +Inf (no math.h under NVRTC)

// api.UnaryOp's values (elementwise.cu, grad.cu)
#define DS_NEG 1
#define DS_EXP 2
#define DS_LOG 3
#define DS_SQRT 4
#define DS_RSQRT 5
#define DS_SQUARE 6
#define DS_ABS 7
#define DS_SIGMOID 8
#define DS_SILU 9
#define DS_SOFTPLUS 10
#define DS_TANH 11
#define DS_RELU 12

__device__ __forceinline__ double ds_warp_sum(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(DS_FULL_MASK, v, o);
	return v;
}

__device__ __forceinline__ float ds_warp_max(float v) {
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(DS_FULL_MASK, v, o));
	return v;
}

// ds_block_sum returns the sum of v over the block to every thread.
__device__ __forceinline__ double ds_block_sum(double v) {
	__shared__ double sh[32];
	const int tid = threadIdx.y * blockDim.x + threadIdx.x;
	const int lane = tid & 31, warp = tid >> 5, nw = (blockDim.x * blockDim.y + 31) >> 5;
	v = ds_warp_sum(v);
	__syncthreads(); // an earlier call may still be reading sh[0]
	if (lane == 0) sh[warp] = v;
	__syncthreads();
	if (warp == 0) {
		v = ds_warp_sum(lane < nw ? sh[lane] : 0.0);
		if (lane == 0) sh[0] = v;
	}
	__syncthreads();
	return sh[0];
}

// ds_block_max returns the maximum of v over the block to every thread
// (NaN-ignoring, as fmaxf is: a row of NaNs gives NaN through the sums).
__device__ __forceinline__ float ds_block_max(float v) {
	__shared__ float sh[32];
	const int tid = threadIdx.y * blockDim.x + threadIdx.x;
	const int lane = tid & 31, warp = tid >> 5, nw = (blockDim.x * blockDim.y + 31) >> 5;
	v = ds_warp_max(v);
	__syncthreads();
	if (lane == 0) sh[warp] = v;
	__syncthreads();
	if (warp == 0) {
		v = ds_warp_max(lane < nw ? sh[lane] : -DS_INF);
		if (lane == 0) sh[0] = v;
	}
	__syncthreads();
	return sh[0];
}

// A grid-stride loop over n elements.
#define DS_FOR_EACH(i, n) \
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// api.Q8_0's blocks: DS_Q8_BLOCK int8 values after their scale, a float16
// (little-endian), DS_Q8_BYTES bytes in all; blocks follow each other with
// no padding (so a scale is 2-byte aligned in an allocation).
#define DS_Q8_BLOCK 32
#define DS_Q8_BYTES 34

// The IEEE half conversions, by PTX cvt (no toolkit header is needed):
// ds_half_to_float widens exactly, ds_float_to_half_rn rounds to nearest
// even (overflow to infinity). The CPU emulator of the backend's tests
// (kernels/emu/ds_emu.h, which defines DS_EMULATE) has its own.
#ifndef DS_EMULATE
__device__ __forceinline__ float ds_half_to_float(unsigned short h) {
	float f;
	asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
	return f;
}

__device__ __forceinline__ unsigned short ds_float_to_half_rn(float f) {
	unsigned short h;
	asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
	return h;
}
#endif

// ds_q8_value returns element i of the Q8_0 data q (blocks from its start)
// as api.DecodeFloat32 does: the scale widened exactly (ds_half_to_float)
// times the integer, one float product rounded to nearest.
__device__ __forceinline__ float ds_q8_value(const unsigned char* q, long long i) {
	const unsigned char* blk = q + (i / DS_Q8_BLOCK) * DS_Q8_BYTES;
	const float d = ds_half_to_float(*(const unsigned short*)blk);
	return __fmul_rn(d, (float)(signed char)blk[2 + i % DS_Q8_BLOCK]);
}
