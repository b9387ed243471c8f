package mamba

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/nn"
)

// TestInitRules checks the statistics of the random rules of the mixer's
// state-space parameters and the exact values of A_log's.
func TestInitRules(t *testing.T) {
	s := nn.NewParams(cpu.New(api.BackendOptions{Threads: 1}), 7).Scope()
	values := func(v *nn.Var) []float32 { return api.Float32s(v.Value()) }
	rangeOf := func(xs []float32) (lo, hi, mean float64) {
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, x := range xs {
			lo, hi = min(lo, float64(x)), max(hi, float64(x))
			mean += float64(x)
		}
		return lo, hi, mean / float64(len(xs))
	}
	if lo, hi, _ := rangeOf(values(s.Param("dt_w", initDtProjWeight(4, 1), 200, 200))); lo < -0.5 || hi > 0.5 || lo > -0.49 || hi < 0.49 {
		t.Errorf("initDtProjWeight(4, 1): range [%g, %g], want about ±0.5", lo, hi)
	}
	if lo, hi, _ := rangeOf(values(s.Param("dt_w_scaled", initDtProjWeight(4, 0.5), 200, 200))); lo < -0.25 || hi > 0.25 || lo > -0.24 || hi < 0.24 {
		t.Errorf("initDtProjWeight(4, 0.5): range [%g, %g], want about ±0.25", lo, hi)
	}
	// dt bias: softplus(bias) is the drawn dt, log-uniform in [1e-3, 1e-1]:
	// log10(dt) is uniform in [-3, -1]. With 40000 draws the standard error
	// of the mean is 0.003, a third of the bound (and the draws are fixed by
	// the seed).
	bias := values(s.Param("dt_b", initDtBias(1e-3, 1e-1, 1e-4), 40000))
	logs := make([]float32, len(bias))
	for i, v := range bias {
		logs[i] = float32(math.Log10(math.Log1p(math.Exp(float64(v)))))
	}
	if lo, hi, mean := rangeOf(logs); lo < -3.0001 || hi > -0.9999 || math.Abs(mean+2) > 0.01 {
		t.Errorf("initDtBias: log10(softplus(bias)) in [%g, %g], mean %g; want uniform in [-3, -1]", lo, hi, mean)
	}
	// The floor: with dtMin below it every dt is clamped up to it.
	for _, v := range values(s.Param("dt_floor", initDtBias(1e-6, 1e-5, 1e-4), 10)) {
		if sp := math.Log1p(math.Exp(float64(v))); math.Abs(sp-1e-4) > 1e-8 {
			t.Fatalf("initDtBias floor: softplus(bias) = %g, want 1e-4", sp)
		}
	}
	for i, v := range values(s.Param("A_log", initALog(), 3, 4)) {
		if want := float32(math.Log(float64(i%4 + 1))); v != want {
			t.Fatalf("A_log[%d] = %v, want %v", i, v, want)
		}
	}
}
