package backendtest

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	registerFused("retention_grad", "RetentionKernels", seqTestRetentionGrad)
}

// seqTestRetentionGrad checks RetentionGrad in each form against finite
// differences of the float64 references.
func seqTestRetentionGrad(t *testing.T, be retentionBackend) {
	for i, c := range seqRetCases {
		// Parallel form. The row denominators are held at their unperturbed
		// values, as the kernel passes no gradient through them; on the
		// first case, scale 1 puts rows on both sides of the lower clamp and
		// scale 400 puts rows at the upper clamp.
		scales := []float64{1}
		if i == 0 {
			scales = append(scales, 400)
		}
		for _, scale := range scales {
			runSub(t, fmt.Sprintf("%v/parallel_scale%g", c, scale), func(t *testing.T) {
				d := seqRetInputs(c, 2000+uint64(i), scale, false)
				do := f32(randVals(newRand(2100+uint64(i)), c.nV(), -1, 1))
				_, den := seqRetParallelRef(c, d.q, d.k, d.v, nil)
				if i == 0 {
					seqRetCheckClamp(t, den, scale > 1)
				}
				f := func(in [][]float64) []float64 {
					o, _ := seqRetParallelRef(c, in[0], in[1], in[2], den)
					return o
				}
				want := append(numericGrad(f, [][]float64{d.q, d.k, d.v}, do), nil) // no S0
				in := seqRetArgs(be, c, d, 0, 0)
				seqRetCheckGrads(t, be, api.RetentionParallel, c, in, upload(be, do, c.B, c.H, c.T, c.dv), nil, want)
			})
		}

		// Recurrent and chunkwise forms compute the same function, so one
		// finite-difference estimate serves all of them.
		for _, off := range seqRetOffsets[:2] {
			for _, withDsT := range []bool{false, true} {
				d := seqRetInputs(c, 2200+uint64(i), 1, off.s0)
				r := newRand(2300 + uint64(i))
				do := f32(randVals(r, c.nV(), -1, 1))
				dsT := make([]float64, c.nS())
				if withDsT {
					dsT = f32(randVals(r, c.nS(), -1, 1))
				}
				f := func(in [][]float64) []float64 {
					return seqRetRecurrentRef(c, in[0], in[1], in[2], in[3], off.offset)
				}
				want := numericGrad(f, d.list(), seqCat(do, dsT))
				doT := upload(be, do, c.B, c.H, c.T, c.dv)
				var dsTT api.Tensor
				if withDsT {
					dsTT = upload(be, dsT, c.B, c.H, c.dk, c.dv)
				}
				for _, f := range seqRetStateful(seqRetChunks[:3]) {
					name := fmt.Sprintf("%v/%v_offset%d_dsT%t", c, f, off.offset, withDsT)
					runSub(t, name, func(t *testing.T) {
						in := seqRetArgs(be, c, d, off.offset, f.chunk)
						seqRetCheckGrads(t, be, f.form, c, in, doT, dsTT, want)
					})
				}
			}
		}
	}
}

// seqRetCheckGrads runs RetentionGrad with every gradient output requested,
// then with each alone (so that a kernel that needs a sibling output to be
// non-nil is caught), and compares each with want (Q, K, V, S0 order).
func seqRetCheckGrads(t *testing.T, be retentionBackend, form api.RetentionForm, c seqRetCase, in api.RetentionArgs, do, dsT api.Tensor, want [][]float64) {
	t.Helper()
	full := func() api.RetentionGrads {
		return api.RetentionGrads{
			Q:  seqGarbage(be, c.B, c.H, c.T, c.dk),
			K:  seqGarbage(be, c.B, c.H, c.T, c.dk),
			V:  seqGarbage(be, c.B, c.H, c.T, c.dv),
			S0: seqGarbageIf(be, in.S0 != nil, c.B, c.H, c.dk, c.dv),
		}
	}
	calls := []api.RetentionGrads{full(), {Q: full().Q}, {K: full().K}, {V: full().V}}
	if in.S0 != nil {
		calls = append(calls, api.RetentionGrads{S0: full().S0})
	}
	for k, g := range calls {
		be.RetentionGrad(form, g, in, do, dsT)
		for j, got := range []api.Tensor{g.Q, g.K, g.V, g.S0} {
			seqCheckGrad(t, fmt.Sprintf("d%s (call %d)", []string{"Q", "K", "V", "S0"}[j], k), got, want[j])
		}
	}
}
