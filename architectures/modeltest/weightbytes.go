package modeltest

import (
	"testing"

	"github.com/densessm/densessm/api"
)

// weightStorages are the storages of the weight matrices a model is built
// with (api.BuildOptions.Weights).
var weightStorages = []api.DType{api.F32, api.BF16, api.Q8_0}

// weightCount is what a model built with one weight storage holds: the
// elements and bytes of its parameters, and the elements of those stored
// in a dtype other than F32.
type weightCount struct {
	Elements, Bytes, LowElements int64
}

// countWeights returns the elements and bytes of m's parameters as its
// backend holds them (DType.Bytes of each parameter's value), and the
// elements of those not stored in F32. It fails t when a parameter is
// stored in a dtype other than F32 and low (F32 for a model built with
// F32 weights).
func countWeights(t testing.TB, what string, m api.LocalModel, low api.DType) weightCount {
	t.Helper()
	var c weightCount
	for _, p := range m.Parameters() {
		d, n := p.Value.DType(), p.Value.Shape().NumElements()
		if d != api.F32 && d != low {
			t.Errorf("%s: parameter %s is stored in %s, want F32 or %s", what, p.Name, d, low)
		}
		b := d.Bytes(n)
		if b < 0 {
			t.Fatalf("%s: parameter %s: %s%v has no byte size", what, p.Name, d, p.Value.Shape())
		}
		c.Elements += int64(n)
		c.Bytes += int64(b)
		if d != api.F32 {
			c.LowElements += int64(n)
		}
	}
	return c
}

// CheckWeightBytes validates each of cfgs and builds its model on b with
// F32, BF16 and Q8_0 weights (api.BuildOptions.Weights), and checks that
// its memory estimate gives what each model holds, exactly:
// est.WeightBytesFor(w) is the sum of DType.Bytes over the parameters of
// the model built with w (est.WeightBytes for F32), est.MatrixParameters
// the elements of the parameters the BF16 model stores in BF16, and
// est.Q8Parameters those the Q8_0 model stores in Q8_0.
//
// So that it cannot pass without testing the rule that decides which
// matrices Q8_0 holds, it also fails unless among cfgs there is a
// configuration whose Q8_0 model stores every weight matrix in Q8_0, and
// one whose Q8_0 model stores some in Q8_0 and keeps others (columns not
// a multiple of api.Q8Block) in F32.
func CheckWeightBytes[C api.Config](t *testing.T, cfgs map[string]C, b api.Backend) {
	t.Helper()
	allQ8, someQ8 := false, false
	for name, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		est, ok := api.EstimateMemory(c)
		if !ok {
			t.Fatalf("%s: the config estimates no memory", name)
		}
		counts := map[api.DType]weightCount{}
		for _, w := range weightStorages {
			what := name + ", " + api.WeightName(w) + " weights"
			m := build(t, c, b, 1, w)
			got := countWeights(t, what, m, w)
			m.Close()
			counts[w] = got
			if got.Elements != est.Parameters {
				t.Errorf("%s: the model has %d parameters, the estimate %d", what, got.Elements, est.Parameters)
			}
			if want := est.WeightBytesFor(w); want != got.Bytes {
				t.Errorf("%s: the parameters take %d bytes, the estimate says %d (%d parameters, %d in matrices, %d of them Q8_0-able)",
					what, got.Bytes, want, est.Parameters, est.MatrixParameters, est.Q8Parameters)
			}
		}
		if f := counts[api.F32]; f.Bytes != est.WeightBytes || f.LowElements != 0 {
			t.Errorf("%s: the F32 model takes %d bytes (%d elements not F32), WeightBytes says %d", name, f.Bytes, f.LowElements, est.WeightBytes)
		}
		bf, q8 := counts[api.BF16].LowElements, counts[api.Q8_0].LowElements
		if bf != est.MatrixParameters {
			t.Errorf("%s: the BF16 model stores %d parameters in BF16, the estimate counts %d in weight matrices", name, bf, est.MatrixParameters)
		}
		if q8 != est.Q8Parameters {
			t.Errorf("%s: the Q8_0 model stores %d parameters in Q8_0, the estimate counts %d", name, q8, est.Q8Parameters)
		}
		t.Logf("%s: %d parameters, %d in weight matrices, %d in Q8_0; bytes f32 %d, bf16 %d, q8 %d",
			name, est.Parameters, bf, q8, counts[api.F32].Bytes, counts[api.BF16].Bytes, counts[api.Q8_0].Bytes)
		switch {
		case q8 > 0 && q8 == bf:
			allQ8 = true
		case q8 > 0 && q8 < bf:
			someQ8 = true
		}
	}
	if !allQ8 || !someQ8 {
		t.Errorf("the configurations do not cover both a model whose weight matrices Q8_0 holds all (%v) and one where it holds some and not others (%v)", allQ8, someQ8)
	}
}
