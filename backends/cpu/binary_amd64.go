//go:build amd64 && !purego

package cpu

import (
	"github.com/densessm/densessm/api"
	xcpu "golang.org/x/sys/cpu"
)

// binaryHasAVX2 reports whether this CPU runs binaryKernelAVX2. Build with
// the purego tag to leave the kernel out.
var binaryHasAVX2 = xcpu.X86.HasAVX2

// binaryKernelAVX2 sets d[i] = x[i] op y[i] for i < n, n a multiple of 8,
// with op 0 add, 1 sub, 2 mul, 3 div (see binary_amd64.s).
//
//go:noescape
func binaryKernelAVX2(op int, d, x, y *float32, n int)

// binaryVVFast runs the whole blocks of eight of binaryVV through the AVX2
// kernel, which does the same single IEEE operation per element as the Go
// loop, and returns how many elements it did (0 without AVX2).
func binaryVVFast(op api.BinaryOp, d, x, y []float32) int {
	n := len(d) &^ 7
	if !binaryHasAVX2 || n == 0 {
		return 0
	}
	code := 0
	switch op {
	case api.OpAdd:
	case api.OpSub:
		code = 1
	case api.OpMul:
		code = 2
	case api.OpDiv:
		code = 3
	default:
		return 0
	}
	_, _ = x[n-1], y[n-1]
	binaryKernelAVX2(code, &d[0], &x[0], &y[0], n)
	return n
}
