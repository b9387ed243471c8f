// convert.cu: api.Kernels.Convert between F32 and the other float dtypes
// (and I32, I64 to F32), one thread an element, and the widening of a BF16
// weight matrix for MatMul. Every narrowing rounds to nearest even, as
// api.EncodeFloat32 does; widening is exact.
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

// F16 to F32, exactly (PTX cvt: no toolkit header is needed).
extern "C" __global__ void ds_convert_f16_f32(float* dst, const unsigned short* src, long long n) {
	DS_FOR_EACH(i, n) {
		float f;
		asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(src[i]));
		dst[i] = f;
	}
}

// F32 to F16, round to nearest even, overflow to infinity.
extern "C" __global__ void ds_convert_f32_f16(unsigned short* dst, const float* src, long long n) {
	DS_FOR_EACH(i, n) {
		unsigned short h;
		asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(src[i]));
		dst[i] = h;
	}
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
