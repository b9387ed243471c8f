// retention.cu: retention in its recurrent form, and (at the end) the
// decay-factor kernels of the parallel and chunkwise forms and of the
// gradients (api.RetentionKernels; the formulas are in api/kernels.go,
// RetentionArgs). The recurrent form:
//	s_p = sum_{j=0..p} gamma^j = (1 - gamma^(p+1)) / (1 - gamma)
//	S_p = S_{p-1} gamma sqrt(s_{p-1}/s_p) + k_p^T v_p / sqrt(s_p)
//	o_p = q_p S_p                       (S_{Offset-1} = S0; no S term at p = 0)
// With T = 1 it is RetNet's decode step.
//
// As on the CPU backend, the state is float and the factors s_p, alpha =
// gamma sqrt(s_{p-1}/s_p) and beta = 1/sqrt(s_p) are computed in double
// (s_p as -expm1((p+1) log gamma) / (1 - gamma)) and rounded to float
// where they multiply float data. o's sum over the dk rows is taken in
// blockDim.y partial sums, so o agrees with the CPU's to rounding.
//
// Parallel over (batch, head) pairs (blockIdx.y = b*H + h) and tiles of 32
// state columns (blockIdx.x; threadIdx.x = the column in the tile). The
// blockDim.y threads of a column split the dk rows: thread y keeps rows y,
// y + blockDim.y, ... (at most DS_RET_MAXR, so dk <= DS_RET_MAXR *
// blockDim.y) in registers for the whole sequence. Dynamic shared memory:
// 2*dk + 32*blockDim.y floats. Blocks have up to 1024 threads
// (kernels.RetentionGeometry: dk up to 512), so the launch bounds hold the
// kernel to 64 registers a thread: without them NVRTC 13.5 gives it 128
// for sm_90, and a block of 1024 threads (dk > 256) could not launch
// (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: 64 Ki registers a block).
#include "common.cuh"

#define DS_RET_MAXR 16

// Shapes: q, k [B,H,T,dk]; v, o [B,H,T,dv]; S0, sT [B,H,dk,dv] or null (sT
// may be S0); gamma [H] (device memory). offset is the absolute position
// of the first token.
extern "C" __global__ __launch_bounds__(1024) void ds_retention_recurrent_f32(float* o, float* sT, const float* q, const float* k, const float* v,
                                                      const float* S0, const float* gamma, int H, int T, int dk, int dv,
                                                      long long offset) {
	extern __shared__ float ds_shared[];
	float* sq = ds_shared;
	float* sk = ds_shared + dk;
	float* part = ds_shared + 2 * dk; // [blockDim.y][32]
	const int tx = threadIdx.x, ty = threadIdx.y, RY = blockDim.y;
	const int j = blockIdx.x * 32 + tx;
	const long long bh = blockIdx.y;
	const bool active = j < dv;
	const double g = gamma[bh % H];
	const double logG = log(g), oneMinG = 1.0 - g;

	float S[DS_RET_MAXR];
#pragma unroll
	for (int r = 0; r < DS_RET_MAXR; r++) {
		const int i = ty + r * RY;
		S[r] = (S0 && active && i < dk) ? S0[(bh * dk + i) * dv + j] : 0.0f;
	}

	for (int t = 0; t < T; t++) {
		const long long p = offset + t;
		const double sp = -expm1((double)(p + 1) * logG) / oneMinG;
		const double beta = 1.0 / sqrt(sp);
		const float alpha = p > 0 ? (float)(g * sqrt((-expm1((double)p * logG) / oneMinG) / sp)) : 0.0f;
		const long long row = bh * T + t;
		__syncthreads(); // the previous token's q, k and partial sums are read
		for (int i = ty * 32 + tx; i < dk; i += 32 * RY) {
			sq[i] = q[row * dk + i];
			sk[i] = k[row * dk + i];
		}
		__syncthreads();
		const float vt = active ? v[row * dv + j] : 0.0f;
		float acc = 0.0f;
#pragma unroll
		for (int r = 0; r < DS_RET_MAXR; r++) {
			const int i = ty + r * RY;
			if (i < dk) {
				const float ka = (float)(beta * (double)sk[i]);
				S[r] = p > 0 ? alpha * S[r] + ka * vt : ka * vt; // at p = 0 the state before is not read
				acc += sq[i] * S[r];
			}
		}
		part[ty * 32 + tx] = acc;
		__syncthreads();
		if (ty == 0 && active) {
			float sum = 0.0f;
			for (int yy = 0; yy < RY; yy++) sum += part[yy * 32 + tx];
			o[row * dv + j] = sum;
		}
	}
	if (sT && active) {
#pragma unroll
		for (int r = 0; r < DS_RET_MAXR; r++) {
			const int i = ty + r * RY;
			if (i < dk) sT[(bh * dk + i) * dv + j] = S[r];
		}
	}
}

// The parallel and chunkwise forms and the gradients of all three
// (retention.go) are batched cuBLAS products over the heads with the small
// kernels below between them for the decay factors, which depend on the
// head (gamma) and the position only. Each takes gamma per head of the
// batch, gamma[bh] for bh = b*H + h (uploaded per call), and computes in
// double, as the CPU backend (backends/cpu/retention.go):
//	s_p = (1 - gamma^(p+1)) / (1 - gamma)    (0 for p = -1)
//	r_p = 1 / sqrt(s_p),  gamma^i = exp(i log gamma)
// rounding to float where a factor multiplies float data.

// ds_ret_s is s_p.
__device__ __forceinline__ double ds_ret_s(long long p, double logG, double oneMinG) {
	return -expm1((double)(p + 1) * logG) / oneMinG;
}

// ds_retention_parallel_scores_f32 turns the scores S = Q K^T of the
// parallel form, A [rows = heads*T, T] (head bh's T rows at bh*T), into the
// normalised matrix in place, one block (256 threads) a row n of head bh:
//	a[m] = (float)(S[n,m] gamma^(n-m) r_n)       m <= n, in double
//	den  = clamp(sum_m |a[m]|, 1, 5e4)          (a double block sum)
//	P[n,m] = a[m] / (float)den, 0 for m > n
// and writes den[row] (float) for the backward pass. Every thread rescales
// the elements it wrote, so the block synchronises only in the sum.
extern "C" __global__ void ds_retention_parallel_scores_f32(float* A, float* den, const float* gamma, int T, long long rows) {
	const long long row = blockIdx.x;
	if (row >= rows) return; // the whole block: no thread reaches the sum
	const long long bh = row / T;
	const int n = (int)(row % T);
	const double logG = log((double)gamma[bh]), oneMinG = 1.0 - (double)gamma[bh];
	const double rn = 1.0 / sqrt(ds_ret_s(n, logG, oneMinG));
	float* a = A + row * T;
	double sum = 0.0;
	for (int m = threadIdx.x; m <= n; m += blockDim.x) {
		const float v = (float)((double)a[m] * exp((double)(n - m) * logG) * rn);
		a[m] = v;
		sum += fabs((double)v);
	}
	sum = ds_block_sum(sum);
	double d = sum < 1.0 ? 1.0 : sum; // NaN stays NaN, as on the CPU
	d = d > 5e4 ? 5e4 : d;
	const float df = (float)d;
	for (int m = threadIdx.x; m < T; m += blockDim.x) a[m] = m <= n ? a[m] / df : 0.0f;
	if (threadIdx.x == 0) den[row] = df;
}

// ds_retention_decay_mask_f32 multiplies A [heads, L, L] (n = heads*L*L
// elements) by a decay mask in place, one thread an element (grid-stride):
//	A[i,j] = (float)(A[i,j] gamma^(i-j) f_i)  j <= i, else 0
//	f_i = r_{p0+i}, or r_{p0+i} / den[bh*L+i] when den is not null
// The chunkwise form's mask is the first (p0 the chunk's first position);
// the parallel form's gradient the second (p0 = 0, L = T, den from
// ds_retention_parallel_scores_f32).
extern "C" __global__ void ds_retention_decay_mask_f32(float* A, const float* den, const float* gamma, int L, long long p0, long long n) {
	const long long LL = (long long)L * L;
	DS_FOR_EACH(e, n) {
		const long long bh = e / LL;
		const int i = (int)(e % LL / L), j = (int)(e % L);
		if (j > i) {
			A[e] = 0.0f;
			continue;
		}
		const double logG = log((double)gamma[bh]), oneMinG = 1.0 - (double)gamma[bh];
		double f = 1.0 / sqrt(ds_ret_s(p0 + i, logG, oneMinG));
		if (den) f = f / (double)den[bh * L + i];
		A[e] = (float)((double)A[e] * exp((double)(i - j) * logG) * f);
	}
}

// ds_retention_scale_rows_f32 sets X [heads, L, width] (n = heads*L*width
// elements) to the rows t0..t0+L-1 of src [heads, T, width], each scaled
// by a factor of the chunk starting at position P0 = offset + t0, one
// thread an element (grid-stride):
//	X[i,x] = (float)(f_i src[t0+i,x])
//	reads = 0: f_i = gamma^(L-1-i) r_{P0+L-1}          (token i writes into the state)
//	reads = 1: f_i = gamma^(i+1) sqrt(s_{P0-1}) r_{P0+i} (token i reads the state before)
extern "C" __global__ void ds_retention_scale_rows_f32(float* X, const float* src, const float* gamma, int T, int t0, int L, int width,
                                                       long long offset, int reads, long long n) {
	const long long P0 = offset + t0;
	DS_FOR_EACH(e, n) {
		const long long bh = e / ((long long)L * width);
		const int i = (int)(e / width % L), x = (int)(e % width);
		const double logG = log((double)gamma[bh]), oneMinG = 1.0 - (double)gamma[bh];
		double f;
		if (reads)
			f = exp((double)(i + 1) * logG) * sqrt(ds_ret_s(P0 - 1, logG, oneMinG)) * (1.0 / sqrt(ds_ret_s(P0 + i, logG, oneMinG)));
		else
			f = exp((double)(L - 1 - i) * logG) * (1.0 / sqrt(ds_ret_s(P0 + L - 1, logG, oneMinG)));
		X[e] = (float)(f * (double)src[(bh * T + t0 + i) * width + x]);
	}
}

// ds_retention_state_decay_f32 sets dst = decay_bh * src for states [heads,
// per] (n = heads*per elements; dst may be src), one thread an element
// (grid-stride), with the decay of the state across the chunk of L tokens
// from position p0 (p0 >= 1):
//	decay = (float)(gamma^L sqrt(s_{p0-1}) r_{p0+L-1})
extern "C" __global__ void ds_retention_state_decay_f32(float* dst, const float* src, const float* gamma, int L, long long p0, long long per,
                                                        long long n) {
	DS_FOR_EACH(e, n) {
		const long long bh = e / per;
		const double logG = log((double)gamma[bh]), oneMinG = 1.0 - (double)gamma[bh];
		const float decay =
		    (float)(exp((double)L * logG) * sqrt(ds_ret_s(p0 - 1, logG, oneMinG)) * (1.0 / sqrt(ds_ret_s(p0 + L - 1, logG, oneMinG))));
		dst[e] = decay * src[e];
	}
}
