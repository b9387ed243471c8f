//go:build !amd64 || purego

package cpu

import "github.com/densessm/densessm/api"

// binaryVVFast returns 0: there is no SIMD kernel here (see the amd64
// version), and binaryVV runs its Go loops on every element.
func binaryVVFast(op api.BinaryOp, d, x, y []float32) int { return 0 }
