// ds_emu.h: the CUDA C the kernels of backends/cuda/kernels/src use, for
// running them on the CPU under the emulator of the backend's tests
// (backends/cuda/emu_test.go; the runtime is ds_emu.cpp). Each generated
// translation unit defines DS_EMULATE, includes this header and then a
// kernel source with its headers pasted in.
//
// The execution model: every CUDA thread of a block is a fiber on one OS
// thread; blocks run one at a time, in order. threadIdx, blockIdx,
// blockDim and gridDim are globals the scheduler sets whenever it switches
// to a thread. __syncthreads and the warp shuffles block the calling fiber
// until its partners arrive (ds_emu.cpp), so a barrier or shuffle that some
// threads never reach fails the launch instead of hanging. Shared memory:
// a __shared__ variable is a static local (one block runs at a time), and
// the generator rewrites `extern __shared__ T name[];` into a pointer to
// the launch's dynamic shared memory.
//
// Arithmetic is the host's IEEE arithmetic, compiled without contraction
// (-ffp-contract=off): the _rn intrinsics are plain rounded operations.
#pragma once
#define DS_EMULATE 1

#include <math.h>
#include <stdint.h>
#include <string.h>

struct uint3 {
	unsigned int x, y, z;
};

struct dim3 {
	unsigned int x, y, z;
};

extern "C" {
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

// The runtime (ds_emu.cpp). file and line name the call site in messages.
void ds_emu_syncthreads(const char* file, int line);
uint64_t ds_emu_shfl(int mode, unsigned mask, uint64_t v, int arg, int width, const char* file, int line);
void* ds_emu_dynamic_shared(void);
bool ds_emu_register_shared(void* p, size_t n);
// ds_emu_register_kernel adds a kernel to the launch table: stub unpacks
// cuLaunchKernel's argument pointers into its typed parameters, whose
// sizes (nargs of them) the launch checks.
bool ds_emu_register_kernel(const char* name, void (*stub)(void** args), int nargs, const size_t* sizes);
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
// A form of __shared__ the generator does not rewrite still compiles.
#define __shared__ static

static const int warpSize = 32;

#define __syncthreads() ds_emu_syncthreads(__FILE__, __LINE__)
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

// The shuffles: mode 0 xor, 1 down, 2 up, 3 idx (ds_emu.cpp).
template <typename T>
inline T ds_emu_shuffle(int mode, unsigned mask, T v, int arg, int width, const char* file, int line) {
	static_assert(sizeof(T) <= 8, "a shuffle of more than 8 bytes");
	uint64_t bits = 0;
	memcpy(&bits, &v, sizeof v);
	bits = ds_emu_shfl(mode, mask, bits, arg, width, file, line);
	T out;
	memcpy(&out, &bits, sizeof out);
	return out;
}
#define ds_emu_shfl_args(mask, v, arg, ...) (mask), (v), (arg), ds_emu_width(__VA_ARGS__ + 0)
inline int ds_emu_width(int w, int = 0) { return w == 0 ? 32 : w; }
#define __shfl_xor_sync(...) ds_emu_shuffle(0, ds_emu_shfl_args(__VA_ARGS__, 0), __FILE__, __LINE__)
#define __shfl_down_sync(...) ds_emu_shuffle(1, ds_emu_shfl_args(__VA_ARGS__, 0), __FILE__, __LINE__)
#define __shfl_up_sync(...) ds_emu_shuffle(2, ds_emu_shfl_args(__VA_ARGS__, 0), __FILE__, __LINE__)
#define __shfl_sync(...) ds_emu_shuffle(3, ds_emu_shfl_args(__VA_ARGS__, 0), __FILE__, __LINE__)

// Bit casts.
template <typename To, typename From>
inline To ds_emu_bits(From v) {
	static_assert(sizeof(To) == sizeof(From), "a bit cast between sizes");
	To out;
	memcpy(&out, &v, sizeof out);
	return out;
}
inline int __float_as_int(float x) { return ds_emu_bits<int>(x); }
inline unsigned int __float_as_uint(float x) { return ds_emu_bits<unsigned int>(x); }
inline float __int_as_float(int x) { return ds_emu_bits<float>(x); }
inline float __uint_as_float(unsigned int x) { return ds_emu_bits<float>(x); }
inline long long __double_as_longlong(double x) { return ds_emu_bits<long long>(x); }
inline double __longlong_as_double(long long x) { return ds_emu_bits<double>(x); }

// Rounded arithmetic: the host's, correctly rounded to nearest even and not
// fused (the translation units are compiled with -ffp-contract=off).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// Conversions: round to nearest even (the host's default rounding mode).
inline float __double2float_rn(double x) { return (float)x; }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned int x) { return (float)x; }
inline float __ll2float_rn(long long x) { return (float)x; }
inline float __ull2float_rn(unsigned long long x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
inline double __ll2double_rn(long long x) { return (double)x; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __double2int_rn(double x) { return (int)nearbyint(x); }

// The fast-math intrinsics, as the accurate functions.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }

// CUDA's min and max overloads.
#define DS_EMU_MINMAX(T)                                  \
	inline T min(T a, T b) { return a < b ? a : b; } \
	inline T max(T a, T b) { return a > b ? a : b; }
DS_EMU_MINMAX(int)
DS_EMU_MINMAX(unsigned int)
DS_EMU_MINMAX(long long)
DS_EMU_MINMAX(unsigned long long)
#undef DS_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

template <typename T>
inline T __ldg(const T* p) {
	return *p;
}

// The atomics the kernels use: plain read-modify-writes (a fiber never
// switches inside one).
template <typename T>
struct ds_emu_same {
	typedef T type;
};
template <typename T>
inline T atomicAdd(T* p, typename ds_emu_same<T>::type v) {
	const T old = *p;
	*p = old + v;
	return old;
}
template <typename T>
inline T atomicCAS(T* p, typename ds_emu_same<T>::type cmp, typename ds_emu_same<T>::type v) {
	const T old = *p;
	if (old == cmp) *p = v;
	return old;
}

// The IEEE half conversions that common.cuh does with PTX cvt on the GPU.

// ds_half_to_float widens a binary16 exactly (subnormals; infinities; a
// NaN keeps its payload), as api.Float16ToFloat32.
inline float ds_half_to_float(unsigned short h) {
	const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
	unsigned int exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112u) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else { // subnormal: normalise
		int e = 113;
		while (!(man & 0x400u)) {
			man <<= 1;
			e--;
		}
		bits = sign | ((unsigned int)e << 23) | ((man & 0x3ffu) << 13);
	}
	return ds_emu_bits<float>(bits);
}

// ds_float_to_half_rn narrows to binary16, rounding to nearest even,
// overflowing to infinity, with subnormals; a NaN becomes the quiet NaN
// with its sign, as api.Float32ToFloat16.
inline unsigned short ds_float_to_half_rn(float f) {
	const unsigned int b = ds_emu_bits<unsigned int>(f);
	const unsigned short sign = (unsigned short)((b >> 16) & 0x8000u);
	const unsigned int a = b & 0x7fffffffu;
	if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);
	if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); // rounds to 65520 or more: infinity
	const int exp = (int)(a >> 23) - 127;
	if (exp >= -14) { // normal: drop 13 bits, round to nearest even
		const unsigned int m = a + 0xfffu + ((a >> 13) & 1u);
		return (unsigned short)(sign | (((m >> 13) - (112u << 10)) & 0x7fffu));
	}
	if (exp < -25) return sign; // below half the smallest subnormal: zero
	// subnormal: the significand with its implicit bit, shifted right
	const unsigned int man = (a & 0x7fffffu) | 0x800000u;
	const int shift = -exp - 1; // 14 + 13 - 1 - (exp + 14) + 1
	const unsigned int q = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
	const unsigned int r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
	return (unsigned short)(sign | r);
}
