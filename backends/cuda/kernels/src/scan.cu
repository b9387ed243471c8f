// scan.cu: the selective scan of Mamba and DenseMamba, forward
// (api.ScanKernels.SelectiveScan; the formulas are in api/fused.go):
//	h_t[e,n]  = exp(Delta_t[e] A[e,n]) h'_{t-1}[e,n] + Delta_t[e] Bm_t[n] X_t[e]
//	h'_t[e,n] = h_t[e,n] + Inject_t[e,n]          (h'_t = h_t without Inject)
//	y_t[e]    = sum_n h'_t[e,n] Cm_t[n] + D[e] X_t[e]
// With T = 1 it is Mamba's decode step.
//
// Parallel over batch rows and channels: blockIdx.y = b, and each block
// takes blockDim.y channels e of that row, L = blockDim.x lanes a channel
// (a power of two up to 32; blockDim.x * blockDim.y a multiple of 32). A
// lane keeps the states n = lane, lane + L, ... (at most DS_SCAN_MAXS of
// them, so N <= DS_SCAN_MAXS * L) in registers for the whole sequence, and
// y's sum over n is a shuffle reduction over the channel's lanes. Chunked
// over time: Bm_t and Cm_t, which every channel of the row reads, are
// staged in shared memory TC tokens at a time (dynamic shared memory of
// 2*TC*N floats).
//
// The state is float, as on the CPU backend; the order of y's sum differs
// from the CPU's, so results agree to rounding, not bit for bit.
#include "common.cuh"

#define DS_SCAN_MAXS 8

// Shapes: X, Delta, y [B,T,E]; A [E,N]; Bm, Cm [B,T,N]; D [E] or null; H0
// and hT [B,E,N] or null (hT may be H0: the state advances in place); hs
// and Inject [B,T,E,N] or null. grid = (ceil(E / blockDim.y), B).
extern "C" __global__ void ds_selective_scan_f32(float* y, float* hT, float* hs, const float* X, const float* Delta,
                                                 const float* A, const float* Bm, const float* Cm, const float* D,
                                                 const float* H0, const float* Inject, int T, int E, int N, int TC) {
	extern __shared__ float ds_shared[];
	float* sB = ds_shared;
	float* sC = ds_shared + TC * N;
	const int L = blockDim.x, lane = threadIdx.x;
	const int e = blockIdx.x * blockDim.y + threadIdx.y;
	const long long b = blockIdx.y;
	const bool active = e < E; // inactive lanes still join the shuffles and barriers
	const long long ben = (b * E + e) * (long long)N;

	float h[DS_SCAN_MAXS], a[DS_SCAN_MAXS];
#pragma unroll
	for (int s = 0; s < DS_SCAN_MAXS; s++) {
		const int n = lane + s * L;
		h[s] = 0.0f;
		a[s] = 0.0f;
		if (active && n < N) {
			a[s] = A[(long long)e * N + n];
			if (H0) h[s] = H0[ben + n];
		}
	}
	const float dskip = (active && D) ? D[e] : 0.0f;

	for (int t0 = 0; t0 < T; t0 += TC) {
		const int tc = min(TC, T - t0);
		__syncthreads(); // the previous chunk is read
		for (int i = threadIdx.y * L + lane; i < tc * N; i += L * blockDim.y) {
			const long long g = (b * T + t0) * N + i;
			sB[i] = Bm[g];
			sC[i] = Cm[g];
		}
		__syncthreads();
		for (int k = 0; k < tc; k++) {
			const long long bte = (b * T + t0 + k) * E + e;
			const float x = active ? X[bte] : 0.0f;
			const float dt = active ? Delta[bte] : 0.0f;
			float acc = 0.0f;
#pragma unroll
			for (int s = 0; s < DS_SCAN_MAXS; s++) {
				const int n = lane + s * L;
				if (active && n < N) {
					float hn = expf(dt * a[s]) * h[s] + dt * sB[k * N + n] * x;
					if (hs) hs[bte * N + n] = hn; // before the injection
					if (Inject) hn += Inject[bte * N + n];
					h[s] = hn;
					acc += hn * sC[k * N + n];
				}
			}
			for (int o = L >> 1; o > 0; o >>= 1) acc += __shfl_xor_sync(DS_FULL_MASK, acc, o);
			if (active && lane == 0) y[bte] = acc + dskip * x;
		}
	}
	if (hT && active) {
#pragma unroll
		for (int s = 0; s < DS_SCAN_MAXS; s++) {
			const int n = lane + s * L;
			if (n < N) hT[ben + n] = h[s];
		}
	}
}
