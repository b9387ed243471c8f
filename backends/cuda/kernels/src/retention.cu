// retention.cu: retention in its recurrent form (api.RetentionKernels,
// RetentionRecurrent; the formulas are in api/kernels.go, RetentionArgs):
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
// 2*dk + 32*blockDim.y floats.
#include "common.cuh"

#define DS_RET_MAXR 16

// Shapes: q, k [B,H,T,dk]; v, o [B,H,T,dv]; S0, sT [B,H,dk,dv] or null (sT
// may be S0); gamma [H] (device memory). offset is the absolute position
// of the first token.
extern "C" __global__ void ds_retention_recurrent_f32(float* o, float* sT, const float* q, const float* k, const float* v,
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
