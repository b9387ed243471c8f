// conv.cu: the fused sequence kernels of api.ConvKernels and
// api.RotaryKernels: Mamba's depthwise causal convolution and RetNet's
// rotation by position, forward.
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
