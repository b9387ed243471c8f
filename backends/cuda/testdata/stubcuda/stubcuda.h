// stubcuda.h: what the stub libcublas (cublas.c) uses of the stub libcuda
// (cuda.c) besides the driver API: the tests' stand-ins for a GPU's
// libraries, which run the backend's real device path (real.go and the
// purego bindings of backends/cuda/driver) on the CPU (stub_device_test.go).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef struct stub_stream* CUstream;
typedef unsigned long long CUdeviceptr;

// stubcuda_enqueue queues fn(arg) on stream s, after checking that the
// calling thread has a usable current context and that s is one of its
// streams; fn runs when the stream is synchronized (or at once, if it is
// not held back), and its CUresult other than 0 becomes the context's
// sticky error. release(arg) follows it, or the refusal.
CUresult stubcuda_enqueue(CUstream s, CUresult (*fn)(void* arg), void (*release)(void* arg), void* arg);

// stubcuda_device_range returns 0 when the n bytes at p lie in one live
// device allocation, else a message saying where p is (a static buffer).
const char* stubcuda_device_range(CUdeviceptr p, size_t n);

// stubcuda_stream_ok returns 0 when s is a live stream (or 0, the legacy
// stream) of the current context, else the driver's error.
CUresult stubcuda_stream_ok(CUstream s);

// stubcuda_has_context returns 1 when the calling thread has a live
// current context.
int stubcuda_has_context(void);

// The CUresults the two stubs share.
enum {
	STUB_CUDA_SUCCESS = 0,
	STUB_CUDA_ERROR_ILLEGAL_ADDRESS = 700,
};
