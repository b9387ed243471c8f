// scan_grad.cu: the backward pass of the selective scan
// (api.ScanKernels.SelectiveScanGrad; the forward is scan.cu). With
// h'_{-1} = H0 (or 0), h_t = exp(Delta_t A) h'_{t-1} + Delta_t Bm_t X_t,
// h'_t = h_t + Inject_t and y_t = sum_n h'_t Cm_t + D X_t, it walks back in
// time carrying dh = dL/dh'_t (dhT at the start, in double), for each token:
//	gh        = dh + dy_t[e] Cm_t[n]          at h'_t: dInject_t = gh
//	dCm_t[n] += dy_t[e] h'_t[e,n]             (over e)
//	gh       += dhs_t[e,n]                    now at h_t
//	dBm_t[n] += gh Delta_t X_t                (over e)
//	dX_t      = sum_n gh Delta_t Bm_t[n] + dy_t D[e]
//	dDelta_t  = sum_n gh (Bm_t[n] X_t + A h'_{t-1} exp(Delta_t A))
//	dA       += gh h'_{t-1} exp(Delta_t A) Delta_t    (over b and t)
//	dD       += dy_t X_t                              (over b and t)
//	dh        = gh exp(Delta_t A)             (dH0 at the end)
// the gradient terms in double, as on the CPU backend (backends/cpu/scan.go).
//
// Parallel as the forward: blockIdx.y = b, blockDim.y channels e a block,
// L = blockDim.x lanes a channel, each lane holding the states n = lane,
// lane + L, ... of its channel in registers (h, A, dh and the dA sums).
// The carried states h'_{t-1} the backward needs are recomputed: a first
// pass runs the scan forward and stores the state at the start of every
// chunk of K tokens into ck [B, ceil(T/K), E, N]; then, for each chunk
// from the last to the first, the chunk's states are recomputed from its
// checkpoint into hc [B, K, E, N] and the chunk is walked back. Each
// thread reads back only the ck and hc elements it wrote itself. The
// scratch is (ceil(T/K) + K) B E N floats (K about sqrt(T): see
// kernels.ScanGradGeometry) instead of T B E N for all the states; the
// forward recurrence runs twice. The recomputation is the forward
// kernel's formula, so the states are those of ds_selective_scan_f32.
//
// Sums: dX_t and dDelta_t over n are each lane's states in order, then a
// shuffle (xor) reduction over the channel's lanes. dBm_t and dCm_t (over
// e): each thread puts its channels' terms into shared memory, and after a
// barrier, thread i sums those of state n = i over the block's channels in
// order, in double, into partB / partC [B, gridDim.x, T, N] (float, as the
// CPU backend's partials of 32 channels; the host sums them over blocks
// with ds_sum_to_f32, in double). dA and dD (per state, over t in order)
// go to partA [B, E, N] and partD [B, E] (double), which
// ds_scan_grad_sum_f32 sums over b in order. No atomics: the results do not
// depend on scheduling.
#include "common.cuh"

#define DS_SCAN_MAXS 8 // states a lane, at most: as scan.cu (kernels.ScanGeometry)

// ds_scan_grad_stage copies count floats of Bm (and of Cm, when sC is not
// null) from element g0 on into shared memory. Every thread of the
// block calls it.
__device__ __forceinline__ void ds_scan_grad_stage(float* sB, float* sC, const float* Bm, const float* Cm,
                                                   long long g0, int count) {
	const int nthreads = blockDim.x * blockDim.y;
	__syncthreads(); // the previous chunk is read
	for (int i = threadIdx.y * blockDim.x + threadIdx.x; i < count; i += nthreads) {
		sB[i] = Bm[g0 + i];
		if (sC) sC[i] = Cm[g0 + i];
	}
	__syncthreads();
}

// ds_scan_grad_step is one token of the forward recurrence for one state,
// as ds_selective_scan_f32 computes it: the carried state after the token
// (Inject, when not null, read at element i).
__device__ __forceinline__ float ds_scan_grad_step(float h, float dt, float a, float bn, float x, const float* Inject,
                                                   long long i) {
	float hn = expf(dt * a) * h + dt * bn * x;
	if (Inject) hn += Inject[i];
	return hn;
}

// Shapes: dX, dDelta, X, Delta, dy [B,T,E]; dInject, Inject, dhs
// [B,T,E,N]; dH0, H0, dhT [B,E,N]; A [E,N]; Bm, Cm [B,T,N]; D [E]; each of
// dX, dDelta, dInject, dH0, partA, partD, partB, partC, D, H0, Inject,
// dhT and dhs may be null (not wanted, or zero); partD only with D.
// dInject may be dhs and dH0 may be dhT (each element is read before it is
// overwritten, by the thread that writes it). ck
// [B, ceil(T/K), E, N] and hc [B, K, E, N] are scratch. grid =
// (ceil(E / blockDim.y), B); dynamic shared memory: 2 blockDim.y N doubles
// and 2 K N floats.
extern "C" __global__ void ds_selective_scan_grad_f32(float* dX, float* dDelta, float* dInject, float* dH0, double* partA,
                                                      double* partD, float* partB, float* partC, float* ck, float* hc,
                                                      const float* X, const float* Delta, const float* A,
                                                      const float* Bm, const float* Cm, const float* D, const float* H0,
                                                      const float* Inject, const float* dy, const float* dhT,
                                                      const float* dhs, int T, int E, int N, int K) {
	extern __shared__ double ds_shared_d[];
	const int L = blockDim.x, lane = threadIdx.x, CH = blockDim.y;
	double* sRB = ds_shared_d;          // [CH][N]: this token's terms of dBm_t, by channel
	double* sRC = sRB + CH * N;         // [CH][N]: of dCm_t
	float* sB = (float*)(sRC + CH * N); // [K][N]: the chunk's Bm
	float* sC = sB + K * N;             // [K][N]: the chunk's Cm
	const int e = blockIdx.x * CH + threadIdx.y;
	const long long b = blockIdx.y;
	const bool active = e < E; // inactive lanes still join the shuffles and barriers
	const long long ben = (b * E + e) * (long long)N;
	const int NC = (T + K - 1) / K;
	const int nch = min(CH, E - (int)blockIdx.x * CH); // the block's channels
	const bool sums = partB || partC;

	float h[DS_SCAN_MAXS], a[DS_SCAN_MAXS];
	double dh[DS_SCAN_MAXS], dA[DS_SCAN_MAXS];
#pragma unroll
	for (int s = 0; s < DS_SCAN_MAXS; s++) {
		const int n = lane + s * L;
		h[s] = a[s] = 0.0f;
		dh[s] = dA[s] = 0.0;
		if (active && n < N) {
			a[s] = A[(long long)e * N + n];
			if (H0) h[s] = H0[ben + n];
			if (dhT) dh[s] = dhT[ben + n];
		}
	}
	const float dskip = (active && D) ? D[e] : 0.0f;
	double dDsum = 0.0;

	// Pass 1: forward, storing the carried state before each chunk (the
	// last chunk's tokens are left to pass 2).
	for (int c = 0; c < NC; c++) {
#pragma unroll
		for (int s = 0; s < DS_SCAN_MAXS; s++) {
			const int n = lane + s * L;
			if (active && n < N) ck[((b * NC + c) * E + e) * N + n] = h[s];
		}
		if (c == NC - 1) break;
		const int t0 = c * K;
		ds_scan_grad_stage(sB, nullptr, Bm, Cm, (b * T + t0) * N, K * N);
		for (int k = 0; k < K; k++) {
			const long long bte = (b * T + t0 + k) * E + e;
			const float x = active ? X[bte] : 0.0f;
			const float dt = active ? Delta[bte] : 0.0f;
#pragma unroll
			for (int s = 0; s < DS_SCAN_MAXS; s++) {
				const int n = lane + s * L;
				if (active && n < N) h[s] = ds_scan_grad_step(h[s], dt, a[s], sB[k * N + n], x, Inject, bte * N + n);
			}
		}
	}

	// Pass 2: the chunks from the last to the first.
	for (int c = NC - 1; c >= 0; c--) {
		const int t0 = c * K, kc = min(K, T - t0);
		ds_scan_grad_stage(sB, sC, Bm, Cm, (b * T + t0) * N, kc * N);
		// Recompute: hc[k] = h'_{t0+k-1}; h ends as h'_{t0+kc-1}.
#pragma unroll
		for (int s = 0; s < DS_SCAN_MAXS; s++) {
			const int n = lane + s * L;
			if (active && n < N) h[s] = ck[((b * NC + c) * E + e) * N + n];
		}
		for (int k = 0; k < kc; k++) {
			const long long bte = (b * T + t0 + k) * E + e;
			const float x = active ? X[bte] : 0.0f;
			const float dt = active ? Delta[bte] : 0.0f;
#pragma unroll
			for (int s = 0; s < DS_SCAN_MAXS; s++) {
				const int n = lane + s * L;
				if (active && n < N) {
					hc[((b * K + k) * E + e) * N + n] = h[s];
					h[s] = ds_scan_grad_step(h[s], dt, a[s], sB[k * N + n], x, Inject, bte * N + n);
				}
			}
		}
		// Back through the chunk; h holds h'_t.
		for (int k = kc - 1; k >= 0; k--) {
			const int t = t0 + k;
			const long long bte = (b * T + t) * E + e;
			const float x = active ? X[bte] : 0.0f;
			const float dt = active ? Delta[bte] : 0.0f;
			const double g = active ? (double)dy[bte] : 0.0;
			double gx = 0.0, gd = 0.0;
#pragma unroll
			for (int s = 0; s < DS_SCAN_MAXS; s++) {
				const int n = lane + s * L;
				if (active && n < N) {
					const long long i = bte * N + n;
					const float hprev = hc[((b * K + k) * E + e) * N + n];
					const float decay = expf(dt * a[s]);
					const double hp = (double)hprev * (double)decay;
					const double bn = sB[k * N + n];
					const float up = dhs ? dhs[i] : 0.0f; // read before dInject is written: they may alias
					double gh = dh[s] + g * (double)sC[k * N + n];
					if (dInject) dInject[i] = (float)gh;
					if (partC) sRC[threadIdx.y * N + n] = g * (double)h[s];
					gh += (double)up;
					if (partB) sRB[threadIdx.y * N + n] = gh * (double)dt * (double)x;
					gx += gh * (double)dt * bn;
					gd += gh * (bn * (double)x + hp * (double)a[s]);
					dA[s] += gh * hp * (double)dt;
					dh[s] = gh * (double)decay;
					h[s] = hprev;
				}
			}
			for (int o = L >> 1; o > 0; o >>= 1) {
				gx += __shfl_xor_sync(DS_FULL_MASK, gx, o);
				gd += __shfl_xor_sync(DS_FULL_MASK, gd, o);
			}
			if (active && lane == 0) {
				if (D) {
					gx += g * (double)dskip;
					dDsum += g * (double)x;
				}
				if (dX) dX[bte] = (float)gx;
				if (dDelta) dDelta[bte] = (float)gd;
			}
			if (sums) {
				__syncthreads(); // every channel's terms are in sRB, sRC
				for (int n = threadIdx.y * L + lane; n < N; n += L * CH) {
					double sb = 0.0, sc = 0.0;
					for (int y = 0; y < nch; y++) {
						if (partB) sb += sRB[y * N + n];
						if (partC) sc += sRC[y * N + n];
					}
					const long long p = ((b * gridDim.x + blockIdx.x) * T + t) * N + n;
					if (partB) partB[p] = (float)sb;
					if (partC) partC[p] = (float)sc;
				}
				__syncthreads(); // read before the next token's terms
			}
		}
	}

	if (active) {
#pragma unroll
		for (int s = 0; s < DS_SCAN_MAXS; s++) {
			const int n = lane + s * L;
			if (n < N) {
				if (dH0) dH0[ben + n] = (float)dh[s];
				if (partA) partA[ben + n] = dA[s];
			}
		}
		if (partD && lane == 0) partD[b * E + e] = dDsum;
	}
}

// ds_scan_grad_sum_f32 sums partA or partD of ds_selective_scan_grad_f32
// over the batch rows: dst[i] = sum over b = 0, 1, ..., B-1 of part[b][i]
// in double, for i < n (dst [n], part [B, n]). One thread an output,
// grid-stride.
extern "C" __global__ void ds_scan_grad_sum_f32(float* dst, const double* part, int B, long long n) {
	DS_FOR_EACH(i, n) {
		double acc = 0.0;
		for (int b = 0; b < B; b++) acc += part[b * n + i];
		dst[i] = (float)acc;
	}
}
