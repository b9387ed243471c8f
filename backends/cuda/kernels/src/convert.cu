// convert.cu: api.Kernels.Convert between F32 and the other float dtypes
// (and I32, I64 to F32, I64 to I32), one thread an element (a warp a block
// for F32 to Q8_0), and the widening of a BF16 or Q8_0 weight matrix for
// MatMul. Every narrowing to a float dtype rounds to nearest even, as
// api.EncodeFloat32 does; widening is exact (Q8_0: one rounded product).
#include "common.cuh"

// BF16 (the upper 16 bits of a float32) to F32, exactly.
extern "C" __global__ void ds_convert_bf16_f32(float* dst, const unsigned short* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = __int_as_float((int)((unsigned int)src[i] << 16));
}

// F32 to BF16, round to nearest even; a NaN stays a quiet NaN with its sign
// (api.Float32ToBFloat16).
extern "C" __global__ void ds_convert_f32_bf16(unsigned short* dst, const float* src, long long n) {
	DS_FOR_EACH(i, n) {
		const unsigned int b = (unsigned int)__float_as_int(src[i]);
		if ((b & 0x7fffffffu) > 0x7f800000u)
			dst[i] = (unsigned short)((b >> 16) | 0x40u);
		else
			dst[i] = (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
	}
}

// F16 to F32, exactly (ds_half_to_float: PTX cvt).
extern "C" __global__ void ds_convert_f16_f32(float* dst, const unsigned short* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = ds_half_to_float(src[i]);
}

// F32 to F16, round to nearest even, overflow to infinity
// (ds_float_to_half_rn: PTX cvt).
extern "C" __global__ void ds_convert_f32_f16(unsigned short* dst, const float* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = ds_float_to_half_rn(src[i]);
}

// F64 to F32, round to nearest even (beyond float32's range: ±Inf).
extern "C" __global__ void ds_convert_f64_f32(float* dst, const double* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = __double2float_rn(src[i]);
}

// F32 to F64, exactly.
extern "C" __global__ void ds_convert_f32_f64(double* dst, const float* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = (double)src[i];
}

// I32 to F32, round to nearest even.
extern "C" __global__ void ds_convert_i32_f32(float* dst, const int* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = __int2float_rn(src[i]);
}

// I64 to F32, round to nearest even.
extern "C" __global__ void ds_convert_i64_f32(float* dst, const long long* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = __ll2float_rn(src[i]);
}

// I64 to I32. A value outside int32's range is not written and sets *bad
// (zero before the launch) to its index + 1 (the first such element any
// thread saw), for the host to raise api.ErrOutOfRange as the CPU backend
// does (it also leaves the elements from there on unwritten).
extern "C" __global__ void ds_convert_i64_i32(int* dst, const long long* src, long long n, unsigned long long* bad) {
	DS_FOR_EACH(i, n) {
		const long long v = src[i];
		if (v < -2147483648ll || v > 2147483647ll) {
			atomicCAS(bad, 0ull, (unsigned long long)i + 1ull);
			continue;
		}
		dst[i] = (int)v;
	}
}

// Q8_0 to F32: n elements (whole blocks), one thread an element
// (ds_q8_value).
extern "C" __global__ void ds_convert_q8_0_f32(float* dst, const unsigned char* src, long long n) {
	DS_FOR_EACH(i, n) dst[i] = ds_q8_value(src, i);
}

// F32 to Q8_0, n elements (n / DS_Q8_BLOCK blocks), as api.QuantizeQ8
// (llama.cpp's quantize_row_q8_0): amax = the largest |x| of the block,
// d = amax / 127 (a rounded float division), stored as float16 (round to
// nearest even, ds_float_to_half_rn), and q_i = x_i * (1/d) (1/d a rounded float
// division, 0 when d is 0; the product rounded) rounded half away from
// zero (roundf). One warp a block (grid-stride over blocks: blockDim.x a
// multiple of 32, so a warp's lanes share every trip of the loop and the
// full-mask shuffles of ds_warp_max), lane j taking element j. The
// maximum is exact in any order; NaNs are not expected (fmaxf skips them,
// the CPU's max does not).
extern "C" __global__ void ds_convert_f32_q8_0(unsigned char* dst, const float* src, long long n) {
	const long long nblk = n / DS_Q8_BLOCK;
	const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	const long long warps = ((long long)gridDim.x * blockDim.x) / 32;
	const int lane = threadIdx.x & 31;
	for (long long blk = tid / 32; blk < nblk; blk += warps) {
		const float v = src[blk * DS_Q8_BLOCK + lane];
		const float amax = ds_warp_max(fabsf(v));
		const float d = __fdiv_rn(amax, 127.0f);
		const float inv = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
		unsigned char* out = dst + blk * DS_Q8_BYTES;
		if (lane == 0) *(unsigned short*)out = ds_float_to_half_rn(d);
		out[2 + lane] = (unsigned char)(signed char)(int)roundf(__fmul_rn(v, inv));
	}
}
