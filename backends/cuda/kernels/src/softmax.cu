// softmax.cu: api.Kernels.Softmax, LogSoftmax, their gradients and the
// fused CrossEntropy, over the last axis, one block per row (grid.x = rows;
// blockDim.x a multiple of 32). As on the CPU backend, the row's maximum is
// subtracted before exponentiating and the sums are accumulated in double.
#include "common.cuh"

// dst = softmax(x); dst may be x.
extern "C" __global__ void ds_softmax_f32(float* dst, const float* x, int V) {
	const long long row = blockIdx.x;
	const float* xr = x + row * V;
	float* dr = dst + row * V;
	float m = -DS_INF;
	for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, xr[j]);
	m = ds_block_max(m);
	double sum = 0.0;
	for (int j = threadIdx.x; j < V; j += blockDim.x) sum += exp((double)xr[j] - (double)m);
	sum = ds_block_sum(sum);
	const double inv = 1.0 / sum;
	for (int j = threadIdx.x; j < V; j += blockDim.x) dr[j] = (float)(exp((double)xr[j] - (double)m) * inv);
}

// dst = x - logsumexp(x); dst may be x.
extern "C" __global__ void ds_log_softmax_f32(float* dst, const float* x, int V) {
	const long long row = blockIdx.x;
	const float* xr = x + row * V;
	float* dr = dst + row * V;
	float m = -DS_INF;
	for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, xr[j]);
	m = ds_block_max(m);
	double sum = 0.0;
	for (int j = threadIdx.x; j < V; j += blockDim.x) sum += exp((double)xr[j] - (double)m);
	const double ls = log(ds_block_sum(sum));
	for (int j = threadIdx.x; j < V; j += blockDim.x) dr[j] = (float)((double)xr[j] - (double)m - ls);
}

// SoftmaxGrad from y = softmax(x): dx = y * (dy - sum_j y_j dy_j), the dot
// in double (each thread's strided partial sum, then ds_block_sum), each
// element in double rounded once, as the CPU backend. dx may be y or dy:
// every thread writes only the elements it read, after the block sum's
// barriers.
extern "C" __global__ void ds_softmax_grad_f32(float* dx, const float* y, const float* dy, int V) {
	const long long row = blockIdx.x;
	const float *yr = y + row * V, *gr = dy + row * V;
	float* dr = dx + row * V;
	double dot = 0.0;
	for (int j = threadIdx.x; j < V; j += blockDim.x) dot += (double)yr[j] * (double)gr[j];
	dot = ds_block_sum(dot);
	for (int j = threadIdx.x; j < V; j += blockDim.x) dr[j] = (float)((double)yr[j] * ((double)gr[j] - dot));
}

// LogSoftmaxGrad from y = logsoftmax(x): dx = dy - exp(y) * sum_j dy_j, the
// sum in double as ds_softmax_grad_f32's dot, exp in double, the product
// and difference each rounded (no fused multiply-add), as the CPU backend.
// dx may be y or dy.
extern "C" __global__ void ds_log_softmax_grad_f32(float* dx, const float* y, const float* dy, int V) {
	const long long row = blockIdx.x;
	const float *yr = y + row * V, *gr = dy + row * V;
	float* dr = dx + row * V;
	double sum = 0.0;
	for (int j = threadIdx.x; j < V; j += blockDim.x) sum += (double)gr[j];
	sum = ds_block_sum(sum);
	for (int j = threadIdx.x; j < V; j += blockDim.x)
		dr[j] = (float)__dsub_rn((double)gr[j], __dmul_rn(exp((double)yr[j]), sum)); // no fused multiply-add
}

// loss[n] = logsumexp(logits[n]) - logits[n, target[n]] and, when dlogits
// is not null, dlogits[n] = softmax(logits[n]) - onehot(target[n]). A row
// whose target is ignore gets loss 0 and gradient 0. A target outside
// [0,V) cannot panic on the device: the row gets loss NaN and gradient 0,
// and *bad (zero before the launch) is set to the row's index + 1 (the
// first such row any thread saw); the host checks it and panics with
// api.ErrOutOfRange as the CPU backend does.
extern "C" __global__ void ds_cross_entropy_f32(float* loss, float* dlogits, const float* logits, const int* targets,
                                                int V, int ignore, unsigned long long* bad) {
	const long long row = blockIdx.x;
	const float* xr = logits + row * V;
	float* dr = dlogits ? dlogits + row * V : 0;
	const int tg = targets[row];
	if (tg == ignore || tg < 0 || tg >= V) {
		if (dr)
			for (int j = threadIdx.x; j < V; j += blockDim.x) dr[j] = 0.0f;
		if (threadIdx.x == 0) {
			loss[row] = tg == ignore ? 0.0f : __int_as_float(0x7fc00000);
			if (tg != ignore) atomicCAS(bad, 0ull, (unsigned long long)row + 1ull);
		}
		return;
	}
	float m = -DS_INF;
	for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, xr[j]);
	m = ds_block_max(m);
	// exp in float (the CPU backend's vector exp, 1 ulp), summed in double.
	double sum = 0.0;
	for (int j = threadIdx.x; j < V; j += blockDim.x) sum += (double)expf(xr[j] - m);
	sum = ds_block_sum(sum);
	if (threadIdx.x == 0) loss[row] = (float)(log(sum) + (double)m - (double)xr[tg]);
	if (dr) {
		const double inv = 1.0 / sum;
		for (int j = threadIdx.x; j < V; j += blockDim.x) {
			float g = (float)((double)expf(xr[j] - m) * inv);
			if (j == tg) g -= 1.0f;
			dr[j] = g;
		}
	}
}
