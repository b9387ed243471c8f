//go:build !amd64 || purego

package cpu

// gemmArchKernels is empty where no SIMD micro-kernel is compiled in: on
// architectures other than amd64, and on amd64 with the purego build tag,
// sgemm always uses the pure-Go kernel.
var gemmArchKernels []*gemmKernel
