// conv.cu: the fused sequence kernels of api.ConvKernels and
// api.RotaryKernels: Mamba's depthwise causal convolution (forward and
// gradients) and RetNet's rotation by position, forward.
#include "common.cuh"

// CausalConv1d, channels last (the CPU backend's layout): x, dst [B,T,C],
// w [C,K], bias [C] or null, prev [B,K-1,C] (the K-1 inputs before t = 0,
// oldest first) or null for zeros:
//	dst[b,t,c] = bias[c] + sum_{k<K} w[c,k] * xx[b,t+k,c]
// with xx = prev followed by x along time. One thread an output element;
// the sum in k order, each product and sum rounded (no fused multiply-add),
// as the CPU backend computes it. dst must not overlap x or prev.
extern "C" __global__ void ds_causal_conv1d_f32(float* dst, const float* x, const float* w, const float* bias,
                                                const float* prev, int B, int T, int C, int K) {
	const long long n = (long long)B * T * C;
	DS_FOR_EACH(i, n) {
		const long long r = i / C;
		const int c = (int)(i - r * C);
		const int b = (int)(r / T), t = (int)(r - (long long)b * T);
		float acc = bias ? bias[c] : 0.0f;
		for (int k = 0; k < K; k++) {
			const int s = t + k; // row of xx
			float v;
			if (s >= K - 1)
				v = x[((long long)b * T + (s - (K - 1))) * C + c];
			else if (prev)
				v = prev[((long long)b * (K - 1) + s) * C + c];
			else
				continue;
			acc = __fadd_rn(acc, __fmul_rn(w[(long long)c * K + k], v));
		}
		dst[i] = acc;
	}
}

// CausalConv1dGrad's input gradients. xx [B,T+K-1,C] is prev followed by x
// along time; its gradient is
//	dxx[b,i,c] = sum_{k<K, 0<=i-k<T} w[c,k] * dy[b,i-k,c]
// written to dx [B,T,C] for the rows i >= K-1 and to dprev [B,K-1,C] for
// the rows i < K-1; either may be null (its rows are skipped). One thread an
// element of xx; the sum in k order from 0, each product and sum rounded, as
// the CPU backend. With T = 0 dprev is zero. dx and dprev must not overlap dy.
extern "C" __global__ void ds_causal_conv1d_grad_x_f32(float* dx, float* dprev, const float* w, const float* dy, int B,
                                                       int T, int C, int K) {
	const long long rows = (long long)T + K - 1; // of xx, per batch row
	const long long n = (long long)B * rows * C;
	DS_FOR_EACH(e, n) {
		const long long r = e / C;
		const int c = (int)(e - r * C);
		const int b = (int)(r / rows);
		const long long i = r - (long long)b * rows;
		float* out;
		if (i >= K - 1)
			out = dx ? dx + ((long long)b * T + (i - (K - 1))) * C + c : 0;
		else
			out = dprev ? dprev + ((long long)b * (K - 1) + i) * C + c : 0;
		if (!out) continue;
		float acc = 0.0f;
		for (int k = 0; k < K; k++) {
			const long long t = i - k;
			if (t < 0 || t >= T) continue;
			acc = __fadd_rn(acc, __fmul_rn(w[(long long)c * K + k], dy[((long long)b * T + t) * C + c]));
		}
		*out = acc;
	}
}

// The rows of a block of ds_causal_conv1d_grad_w_f32 (kernels.ConvGradWGeometry's
// Block.Y; a power of two).
#define DS_CONV_GRAD_ROWS 16

// CausalConv1dGrad's parameter gradients: dw [C,K] and dbias [C], either
// null,
//	dw[c,k]  = sum_{b,t} dy[b,t,c] * xx[b,t+k,c]
//	dbias[c] = sum_{b,t} dy[b,t,c]
// with xx = prev (null: zeros) followed by x. Grid (ceil(C/32), K+1): block
// (x, y) sums tap y of 32 channels (y = K: the bias); block 32 x
// DS_CONV_GRAD_ROWS, thread (tx, ty) takes channel 32x + tx and the rows
// r = b*T+t = ty, ty + DS_CONV_GRAD_ROWS, ..., summing in double (each
// product of two floats is exact in double); the DS_CONV_GRAD_ROWS partial
// sums of a channel are then added in shared memory by halving (ty + s into
// ty for s = 8, 4, 2, 1). No atomics: the result is the same every run.
// With B*T = 0 both are zero.
extern "C" __global__ void ds_causal_conv1d_grad_w_f32(float* dw, float* dbias, const float* x, const float* prev,
                                                       const float* dy, int B, int T, int C, int K) {
	__shared__ double part[DS_CONV_GRAD_ROWS][32];
	const int k = blockIdx.y; // K: the bias
	if (k == K ? !dbias : !dw) return; // the whole block: no barrier is skipped
	const int tx = threadIdx.x, ty = threadIdx.y;
	const int c = blockIdx.x * 32 + tx;
	const long long BT = (long long)B * T;
	double acc = 0.0;
	if (c < C) {
		for (long long r = ty; r < BT; r += DS_CONV_GRAD_ROWS) {
			const double g = dy[r * C + c];
			if (k == K) {
				acc += g;
				continue;
			}
			const long long b = r / T;
			const long long s = r - b * T + k; // row of xx
			float v;
			if (s >= K - 1)
				v = x[(b * T + (s - (K - 1))) * C + c];
			else if (prev)
				v = prev[(b * (K - 1) + s) * C + c];
			else
				continue;
			acc += g * (double)v;
		}
	}
	part[ty][tx] = acc;
	__syncthreads();
	for (int h = DS_CONV_GRAD_ROWS / 2; h > 0; h >>= 1) {
		if (ty < h) part[ty][tx] += part[ty + h][tx];
		__syncthreads();
	}
	if (ty == 0 && c < C) {
		if (k == K)
			dbias[c] = (float)part[0][tx];
		else
			dw[(long long)c * K + k] = (float)part[0][tx];
	}
}

// Rotary: the pair (2i, 2i+1) of each row of x [rows = ..., T][2*half]
// becomes (a cos φ - b sin φ, b cos φ + a sin φ) with φ = (float)(offset+t)
// * theta[i] (a float product), the sine and cosine in double rounded to
// float as the CPU backend's tables; inverse negates the sine. One thread a
// pair; dst may be x.
extern "C" __global__ void ds_rotary_f32(float* dst, const float* x, const float* theta, long long rows, int T, int half,
                                         long long offset, int inverse) {
	const long long n = rows * half;
	DS_FOR_EACH(p, n) {
		const long long r = p / half;
		const int i = (int)(p - r * half);
		const int t = (int)(r % T);
		const float phi = __fmul_rn((float)(offset + t), theta[i]);
		double sd, cd;
		sincos((double)phi, &sd, &cd);
		const float cs = (float)cd, sn = inverse ? (float)(-sd) : (float)sd;
		const float a = x[2 * p], b = x[2 * p + 1];
		dst[2 * p] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
		dst[2 * p + 1] = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
	}
}
