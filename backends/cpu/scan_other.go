//go:build !amd64 || purego

package cpu

// scanChannelsFast reports false: there is no SIMD scan here (see the
// amd64 version), and scanData.run takes its Go loop.
func scanChannelsFast(h, w, x, dt, b, c, y []float32, n int) bool { return false }

// scanBackFast reports false: there is no SIMD backward step here (see
// the amd64 version), and scanData.backBlock takes scanBackGeneric.
func scanBackFast(st *scanBackStep) bool { return false }
