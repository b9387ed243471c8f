package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestRMSNormGradWide checks RMSNorm and its gradient on rows wider than
// one accumulation block (so dw is split into several), with enough rows to
// be split across threads, against the closed-form float64 gradient.
func TestRMSNormGradWide(t *testing.T) {
	const rows, d, eps = 70, 300, 1e-5
	r := rand.New(rand.NewPCG(7, 1))
	for _, threads := range testThreads {
		be := New(api.BackendOptions{Threads: threads})
		x, w, dy := randT(be, r, -2, 2, rows, d), randT(be, r, -1.5, 1.5, d), randT(be, r, -1, 1, rows, d)
		wantY := make([]float64, rows*d)
		wantDX := make([]float64, rows*d)
		wantDW := make([]float64, d)
		for i := range rows {
			var ss, dot float64
			for j := range d {
				v := float64(x.f32[i*d+j])
				ss += v * v
				dot += float64(dy.f32[i*d+j]) * float64(w.f32[j]) * v
			}
			inv := 1 / math.Sqrt(ss/d+float64(float32(eps)))
			for j := range d {
				v, g, wj := float64(x.f32[i*d+j]), float64(dy.f32[i*d+j]), float64(w.f32[j])
				wantY[i*d+j] = v * inv * wj
				wantDX[i*d+j] = inv*wj*g - inv*inv*inv*v*dot/d
				wantDW[j] += g * v * inv
			}
		}
		y, dx, dw := nanT(be, rows, d), nanT(be, rows, d), nanT(be, d)
		be.RMSNorm(y, x, w, eps)
		be.RMSNormGrad(dx, dw, x, w, dy, eps)
		name := fmt.Sprintf("threads=%d", threads)
		checkClose(t, name+" y", y.f32, wantY, 1e-6)
		checkClose(t, name+" dx", dx.f32, wantDX, 1e-6)
		checkClose(t, name+" dw", dw.f32, wantDW, 1e-6)
	}
}
