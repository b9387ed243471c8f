//go:build !amd64 || purego

package cpu

// gemvArchKernels is empty where no SIMD dot-product kernel is compiled in:
// on architectures other than amd64, and on amd64 with the purego build
// tag, gemv always uses the pure-Go kernel.
var gemvArchKernels []*gemvKernel
