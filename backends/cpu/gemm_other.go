//go:build !amd64 || purego

package cpu

// gemmArchKernels is empty where no SIMD micro-kernel is compiled in: on
// architectures other than amd64, and on amd64 with the purego build tag,
// sgemm always uses the pure-Go kernel.
var gemmArchKernels []*gemmKernel

// gemmPackColsFast reports false: there is no SIMD packing here (see the
// amd64 version).
func gemmPackColsFast(d, src []float32, ld, w, n, kc int) bool { return false }

// gemmPackRowsFast reports false: there is no SIMD packing here (see the
// amd64 version).
func gemmPackRowsFast(d, src []float32, ld, w, rows int) bool { return false }
