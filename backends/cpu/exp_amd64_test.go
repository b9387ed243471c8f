//go:build amd64 && !purego

package cpu

func init() {
	if expHasAVX2 {
		expTestKernels["avx2"] = func(d, x []float32) { expAVX2(d, x, 0) }
	}
}
