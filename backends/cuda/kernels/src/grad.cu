// grad.cu: gradient kernels for training: api.Kernels.UnaryGrad, SumTo,
// RMSNormGrad and GatherGrad. Sums are accumulated in double, as the CPU
// backend does; the order of GatherGrad's atomic additions is not fixed.
#include "common.cuh"

// dx = dy * op'(x), in double, rounded once; n elements.
extern "C" __global__ void ds_unary_grad_f32(int op, float* dx, const float* x, const float* dy, long long n) {
	DS_FOR_EACH(i, n) {
		const float xf = x[i];
		const double v = xf, g = dy[i];
		double r;
		switch (op) {
		case DS_NEG: r = -g; break;
		case DS_EXP: r = g * exp(v); break;
		case DS_LOG: r = g / v; break;
		case DS_SQRT: r = g * 0.5 / sqrt(v); break;
		case DS_RSQRT: r = g * -0.5 / (v * sqrt(v)); break;
		case DS_SQUARE: r = g * 2.0 * v; break;
		case DS_ABS: r = xf > 0.0f ? g : (xf < 0.0f ? -g : 0.0); break;
		case DS_SIGMOID: {
			const double s = 1.0 / (1.0 + exp(-v));
			r = g * s * (1.0 - s);
			break;
		}
		case DS_SILU: {
			const double s = 1.0 / (1.0 + exp(-v));
			r = g * s * (1.0 + v * (1.0 - s));
			break;
		}
		case DS_SOFTPLUS: r = xf > 20.0f ? g : g * (1.0 / (1.0 + exp(-v))); break;
		case DS_TANH: {
			const double t = tanh(v);
			r = g * (1.0 - t * t);
			break;
		}
		case DS_RELU: r = xf > 0.0f ? g : 0.0; break;
		default: r = __longlong_as_double(0x7ff8000000000000ll); // an unknown op: NaN
		}
		dx[i] = (float)r;
	}
}

// The axes of a SumTo prepared on the host (backends/cuda/kernels
// SumToPlan): x's axes split into the kept ones (dst's, in order) and the
// summed ones, each list merged and given x's element strides. Laid out as
// 8-byte fields, passed by value.
#define DS_MAX_SUM_DIMS 8
struct DsSumTo {
	long long nkeep;
	long long keep[DS_MAX_SUM_DIMS];
	long long keepStride[DS_MAX_SUM_DIMS];
	long long nsum;
	long long sum[DS_MAX_SUM_DIMS];
	long long sumStride[DS_MAX_SUM_DIMS];
};

// dst[i] = the sum over the summed axes of x at kept index i, in double;
// n outputs, m summed elements each (m >= 1). One thread an output.
extern "C" __global__ void ds_sum_to_f32(float* dst, const float* x, long long n, long long m, DsSumTo p) {
	DS_FOR_EACH(i, n) {
		long long rem = i, base = 0;
		for (int d = (int)p.nkeep - 1; d >= 0; d--) {
			const long long idx = rem % p.keep[d];
			rem /= p.keep[d];
			base += idx * p.keepStride[d];
		}
		double s = 0.0;
		for (long long j = 0; j < m; j++) {
			long long r = j, off = base;
			for (int d = (int)p.nsum - 1; d >= 0; d--) {
				const long long idx = r % p.sum[d];
				r /= p.sum[d];
				off += idx * p.sumStride[d];
			}
			s += (double)x[off];
		}
		dst[i] = (float)s;
	}
}

// inv[r] = 1/sqrt(mean(x[r]^2) + eps) in double for each row of D; one
// block a row (grid.x = rows).
extern "C" __global__ void ds_rms_inv_f32(double* inv, const float* x, int D, float eps) {
	const long long row = blockIdx.x;
	const float* xr = x + row * D;
	double ss = 0.0;
	for (int j = threadIdx.x; j < D; j += blockDim.x) {
		const double v = xr[j];
		ss += v * v;
	}
	ss = ds_block_sum(ss);
	if (threadIdx.x == 0) inv[row] = 1.0 / sqrt(ss / D + (double)eps);
}

// RMSNorm's input gradient, one block a row, with r = inv[row]:
//	dx_j = r w_j dy_j - r^3 x_j / D * sum_i dy_i w_i x_i
// w may be null (1).
extern "C" __global__ void ds_rmsnorm_grad_f32(float* dx, const float* x, const float* w, const float* dy,
                                               const double* inv, int D) {
	const long long row = blockIdx.x;
	const float *xr = x + row * D, *gr = dy + row * D;
	float* dr = dx + row * D;
	double dot = 0.0;
	for (int j = threadIdx.x; j < D; j += blockDim.x) {
		const double wj = w ? (double)w[j] : 1.0;
		dot += (double)gr[j] * wj * (double)xr[j];
	}
	dot = ds_block_sum(dot);
	const double r = inv[row], c = r * r * r * dot / D;
	for (int j = threadIdx.x; j < D; j += blockDim.x) {
		const double wj = w ? (double)w[j] : 1.0;
		dr[j] = (float)(r * wj * (double)gr[j] - c * (double)xr[j]);
	}
}

// RMSNorm's weight gradient: dw[j] = sum over rows of dy[r,j] x[r,j] inv[r],
// in double; one thread a column.
extern "C" __global__ void ds_rmsnorm_grad_w_f32(float* dw, const float* x, const float* dy, const double* inv,
                                                 long long rows, int D) {
	DS_FOR_EACH(j, (long long)D) {
		double s = 0.0;
		for (long long r = 0; r < rows; r++) s += (double)dy[r * D + j] * (double)x[r * D + j] * inv[r];
		dw[j] = (float)s;
	}
}

// GatherGrad's scatter-add: dtable[ids[r], j] += dy[r, j] for rows r, j < D
// (dtable zeroed before the launch). An id outside [0, V) adds nothing and
// sets *bad (zero before the launch) to r + 1 for the host to raise
// api.ErrOutOfRange.
extern "C" __global__ void ds_gather_grad_f32(float* dtable, const int* ids, const float* dy, long long rows, int D,
                                              int V, unsigned long long* bad) {
	const long long n = rows * D;
	DS_FOR_EACH(i, n) {
		const long long r = i / D, j = i - r * D;
		const int id = ids[r];
		if (id < 0 || id >= V) {
			atomicCAS(bad, 0ull, (unsigned long long)r + 1ull);
			continue;
		}
		atomicAdd(dtable + (long long)id * D + j, dy[i]);
	}
}
