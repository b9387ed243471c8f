//go:build !amd64 || purego

package cpu

import "github.com/densessm/densessm/api"

// lowDotsArch is empty: lowGemv uses the pure-Go kernel.
var lowDotsArch []*lowDots

// lowDotArch is never called here (no kernel sets arch); it is lowDotGo.
func lowDotArch(m *lowMatrix, rs *lowRows, v []lowVec, out *[8]float32) {
	lowDotGo(m, rs, v, out)
}

// widenArch widens nothing: lowMatrix.widen does it all in Go.
func widenArch(dst []float32, d api.DType, src []byte) int { return 0 }

// quantizeQ16Arch does nothing: quantizeQ16 does it in Go.
func quantizeQ16Arch(q []int16, d, x []float32) bool { return false }
