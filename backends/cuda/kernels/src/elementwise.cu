// elementwise.cu: api.Kernels.Unary, Affine and Binary (NumPy
// broadcasting). The op codes are api.UnaryOp's and api.BinaryOp's values.
#include "common.cuh"

// api.BinaryOp
#define DS_ADD 1
#define DS_SUB 2
#define DS_MUL 3
#define DS_DIV 4

__device__ __forceinline__ float ds_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float ds_unary(int op, float x) {
	switch (op) {
	case DS_NEG: return -x;
	case DS_EXP: return expf(x);
	case DS_LOG: return logf(x);
	case DS_SQRT: return sqrtf(x);
	case DS_RSQRT: return 1.0f / sqrtf(x);
	case DS_SQUARE: return x * x;
	case DS_ABS: return fabsf(x);
	case DS_SIGMOID: return ds_sigmoid(x);
	case DS_SILU: return x * ds_sigmoid(x);
	case DS_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x)); // PyTorch's threshold rule
	case DS_TANH: return tanhf(x);
	case DS_RELU: return x > 0.0f ? x : 0.0f;
	}
	return __int_as_float(0x7fc00000); // an unknown op: NaN
}

__device__ __forceinline__ float ds_binary(int op, float a, float b) {
	switch (op) {
	case DS_ADD: return a + b;
	case DS_SUB: return a - b;
	case DS_MUL: return a * b;
	case DS_DIV: return a / b;
	}
	return __int_as_float(0x7fc00000);
}

// dst = op(x), n elements; dst may be x.
extern "C" __global__ void ds_unary_f32(int op, float* dst, const float* x, long long n) {
	DS_FOR_EACH(i, n) dst[i] = ds_unary(op, x[i]);
}

// dst = x*scale + shift, rounded after each operation (no fused
// multiply-add); dst may be x.
extern "C" __global__ void ds_affine_f32(float* dst, const float* x, long long n, float scale, float shift) {
	DS_FOR_EACH(i, n) dst[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
}

// The broadcast of a binary op, prepared on the host (backends/cuda/kernels
// BroadcastPlan): the output's dimensions after merging the ones that can
// be merged, and for each the element strides of a and b (0 where that
// operand is broadcast). Laid out as 8-byte fields, passed by value.
#define DS_MAX_DIMS 8
struct DsBroadcast {
	long long ndim;
	long long dims[DS_MAX_DIMS];
	long long astride[DS_MAX_DIMS];
	long long bstride[DS_MAX_DIMS];
};

// dst = a op b with broadcasting; n = the output's element count. dst may
// be a or b when it has that operand's shape.
extern "C" __global__ void ds_binary_f32(int op, float* dst, const float* a, const float* b, long long n, DsBroadcast bc) {
	DS_FOR_EACH(i, n) {
		long long rem = i, ao = 0, bo = 0;
		for (int d = (int)bc.ndim - 1; d >= 0; d--) {
			const long long idx = rem % bc.dims[d];
			rem /= bc.dims[d];
			ao += idx * bc.astride[d];
			bo += idx * bc.bstride[d];
		}
		dst[i] = ds_binary(op, a[ao], b[bo]);
	}
}

// dst = a op b, same shapes (the common case, without index arithmetic).
extern "C" __global__ void ds_binary_same_f32(int op, float* dst, const float* a, const float* b, long long n) {
	DS_FOR_EACH(i, n) dst[i] = ds_binary(op, a[i], b[i]);
}
