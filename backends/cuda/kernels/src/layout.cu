// layout.cu: api.Kernels.Slice, SetSlice and Permute (copies that move
// elements between contiguous row-major layouts, any dtype stored one
// element at a time, moved as 4-byte words or bytes), and Gather (embedding
// rows by I32 ids, from an F32, BF16 or Q8_0 table).
#include "common.cuh"

// The window of Slice and SetSlice: whole is outer rows of size*inner units,
// part is outer rows of length = n*inner units, and row o of part is the
// run of length units that starts start*inner units into row o of whole.
// set copies part into whole (SetSlice), else whole into part (Slice).
template <typename U>
__device__ __forceinline__ void ds_window(U* whole, U* part, long long outer, long long size, long long start,
                                          long long inner, long long length, int set) {
	const long long n = outer * length;
	DS_FOR_EACH(i, n) {
		const long long o = i / length, j = i - o * length;
		const long long w = (o * size + start) * inner + j;
		if (set)
			whole[w] = part[i];
		else
			part[i] = whole[w];
	}
}

// In 4-byte words (every byte count a multiple of 4).
extern "C" __global__ void ds_window_u32(unsigned int* whole, unsigned int* part, long long outer, long long size,
                                         long long start, long long inner, long long length, int set) {
	ds_window<unsigned int>(whole, part, outer, size, start, inner, length, set);
}

// In bytes.
extern "C" __global__ void ds_window_u8(unsigned char* whole, unsigned char* part, long long outer, long long size,
                                        long long start, long long inner, long long length, int set) {
	ds_window<unsigned char>(whole, part, outer, size, start, inner, length, set);
}

// A permutation prepared on the host (backends/cuda/kernels PermutePlan):
// dst's dimensions, outermost first, with size-1 axes dropped and axes that
// src also walks contiguously merged, and for each the stride in src (in
// units). Laid out as 8-byte fields, passed by value.
#define DS_MAX_PERM_DIMS 8
struct DsPermute {
	long long ndim;
	long long dims[DS_MAX_PERM_DIMS];
	long long stride[DS_MAX_PERM_DIMS];
};

template <typename U>
__device__ __forceinline__ void ds_permute(U* dst, const U* src, long long n, const DsPermute& p) {
	DS_FOR_EACH(i, n) {
		long long rem = i, off = 0;
		for (int d = (int)p.ndim - 1; d >= 0; d--) {
			const long long idx = rem % p.dims[d];
			rem /= p.dims[d];
			off += idx * p.stride[d];
		}
		dst[i] = src[off];
	}
}

// dst[i] = src[offset of i], n units of 4 bytes (F32, I32).
extern "C" __global__ void ds_permute_u32(unsigned int* dst, const unsigned int* src, long long n, DsPermute p) {
	ds_permute<unsigned int>(dst, src, n, p);
}

// The same in bytes (other dtypes: the plan has an innermost axis over the
// bytes of one element).
extern "C" __global__ void ds_permute_u8(unsigned char* dst, const unsigned char* src, long long n, DsPermute p) {
	ds_permute<unsigned char>(dst, src, n, p);
}

// dst[r, j] = table[ids[r], j] for rows r < rows, j < D, table [V, D]. An id
// outside [0, V) leaves its row of dst as it was and sets *bad (zero before
// the launch) to r + 1 (the first such row any thread saw); the host checks
// it and panics with api.ErrOutOfRange as the CPU backend does.
extern "C" __global__ void ds_gather_f32(float* dst, const float* table, const int* ids, long long rows, int D, int V,
                                         unsigned long long* bad) {
	const long long n = rows * D;
	DS_FOR_EACH(i, n) {
		const long long r = i / D, j = i - r * D;
		const int id = ids[r];
		if (id < 0 || id >= V) {
			atomicCAS(bad, 0ull, (unsigned long long)r + 1ull);
			continue;
		}
		dst[i] = table[(long long)id * D + j];
	}
}

// The same from a BF16 table (the upper 16 bits of a float32), widened
// exactly.
extern "C" __global__ void ds_gather_bf16(float* dst, const unsigned short* table, const int* ids, long long rows, int D,
                                          int V, unsigned long long* bad) {
	const long long n = rows * D;
	DS_FOR_EACH(i, n) {
		const long long r = i / D, j = i - r * D;
		const int id = ids[r];
		if (id < 0 || id >= V) {
			atomicCAS(bad, 0ull, (unsigned long long)r + 1ull);
			continue;
		}
		dst[i] = __int_as_float((int)((unsigned int)table[(long long)id * D + j] << 16));
	}
}

// The same from a Q8_0 table (rows of D/32 whole blocks), each element
// widened as api.DecodeFloat32 does (ds_q8_value).
extern "C" __global__ void ds_gather_q8_0(float* dst, const unsigned char* table, const int* ids, long long rows, int D,
                                          int V, unsigned long long* bad) {
	const long long n = rows * D;
	const long long rowBytes = (long long)(D / DS_Q8_BLOCK) * DS_Q8_BYTES;
	DS_FOR_EACH(i, n) {
		const long long r = i / D, j = i - r * D;
		const int id = ids[r];
		if (id < 0 || id >= V) {
			atomicCAS(bad, 0ull, (unsigned long long)r + 1ull);
			continue;
		}
		dst[i] = ds_q8_value(table + (long long)id * rowBytes, j);
	}
}
