package modeltest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// LowPrecisionTol bounds the relative deviation (RelErr) of a tiny random
// model's logits with low-precision weights from its F32 logits, by
// weight dtype. bfloat16 keeps 8 bits of mantissa (relative rounding
// 2^-9) and Q8_0 about 7 bits of the block's largest magnitude; the
// deviation of the logits stays within a few such roundings.
var LowPrecisionTol = map[api.DType]float64{api.BF16: 2e-2, api.Q8_0: 4e-2}

// lowFormsTol is how far a low-precision model's recurrent and prefill
// forms may be from its parallel form (RelErr). The weights are the same
// in every form; the CPU backend's decode products with Q8_0 weights
// round the activations to 16 bits per block of 32 (1/65534 of the
// block's largest magnitude), which its GEMM does not; RetNet's group
// norm amplifies that to about 2.5e-4 on the tiny test models.
var lowFormsTol = map[api.DType]float64{api.BF16: 1e-5, api.Q8_0: 1e-3}

// CheckLowPrecision builds the model of cfg from one seed with F32, BF16
// and Q8_0 weights (BuildOptions.Weights) and checks, for each low
// precision: that the linear layers' weights are stored in it (every
// parameter whose dtype is not F32 has that dtype, and there is at least
// one); that Info reports it and is not trainable, and LossAndGrad
// refuses with ErrUnsupported; that the logits of the parallel form stay
// within LowPrecisionTol of the F32 model's and differ from them; that
// its recurrent and prefill forms agree with its own parallel form (to
// lowFormsTol); that ForwardInto writes the same logits; and that the
// model saved and loaded again has the same parameters, bit for bit
// (checkLowPrecisionSaved).
func CheckLowPrecision(t *testing.T, cfg api.Config, b api.Backend) {
	t.Helper()
	a, err := api.LookupArchitecture(cfg.ArchName())
	if err != nil {
		t.Fatal(err)
	}
	const B, T, split = 2, 24, 15
	ids := RandomIDs(rand.New(rand.NewPCG(3, 4)), B, T, cfg.Vocab())
	logits := func(m api.Model) []float32 {
		t.Helper()
		out, err := m.Forward(t.Context(), ids, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		return api.Float32s(out)
	}
	base, err := a.New(t.Context(), cfg, api.BuildOptions{On: b, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := logits(base)
	for _, d := range []api.DType{api.BF16, api.Q8_0} {
		t.Run(d.String(), func(t *testing.T) {
			m, err := a.New(t.Context(), cfg, api.BuildOptions{On: b, Seed: 5, Weights: d})
			if err != nil {
				t.Fatal(err)
			}
			low := 0
			for _, p := range m.(api.LocalModel).Parameters() {
				switch p.Value.DType() {
				case d:
					low++
				case api.F32:
				default:
					t.Errorf("parameter %s is %s", p.Name, p.Value.DType())
				}
			}
			if low == 0 {
				t.Fatalf("no parameter is stored in %s", d)
			}
			if info := m.Info(); info.Weights != d || info.Trainable {
				t.Errorf("Info says weights %s, trainable %v; want %s, false", info.Weights, info.Trainable, d)
			}
			batch := api.Batch{Inputs: ids, Targets: ids}
			if _, err := m.(api.Trainable).LossAndGrad(t.Context(), batch); !errors.Is(err, api.ErrUnsupported) {
				t.Errorf("LossAndGrad with %s weights: %v, want ErrUnsupported", d, err)
			}
			got := logits(m)
			e := RelErr(got, want)
			t.Logf("%s weights: logits deviate from F32 by %.3g relative (%d of the parameters in %s)", d, e, low, d)
			if e > LowPrecisionTol[d] || e == 0 {
				t.Errorf("%s weights: logits deviate from F32 by %.3g, want within (0, %g]", d, e, LowPrecisionTol[d])
			}
			l := &Logits{Want: got, B: B, T: T, V: cfg.Vocab(), Tol: lowFormsTol[d]}
			CheckRecurrentForms(t, m, ids, split, l)
			CheckForwardInto(t, m, ids, got)
			checkLowPrecisionSaved(t, m, d)
		})
	}
	if _, err := a.New(t.Context(), cfg, api.BuildOptions{On: b, Weights: api.I8}); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("weights in I8: %v, want ErrUnsupported", err)
	}
}

// checkLowPrecisionSaved saves m, whose weights are stored in d, with
// checkpoint.SaveModel and checks that loading it gives the same
// parameters bit for bit: by default for Q8_0 (the file says its weights
// are Q8_0, and they are not quantized again), with Weights set for BF16
// (a BF16 file loads as F32 by default); and that a Q8_0 file loaded with
// F32 weights holds their exact values.
func checkLowPrecisionSaved(t *testing.T, m api.Model, d api.DType) {
	t.Helper()
	dir := t.TempDir()
	if err := checkpoint.SaveModel(t.Context(), dir, m); err != nil {
		t.Fatal(err)
	}
	lm := m.(api.LocalModel)
	want, err := lm.ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	build := api.BuildOptions{On: lm.Backend()}
	if d == api.BF16 {
		build.Weights = d
	}
	back, err := checkpoint.LoadModel(t.Context(), dir, checkpoint.LoadOptions{Build: build})
	if err != nil {
		t.Fatal(err)
	}
	if w := back.Info().Weights; w != d {
		t.Fatalf("saved with %s weights, loaded with %s", d, w)
	}
	got, err := back.(api.LocalModel).ReadParams(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.Name != want[i].Name || g.DType != want[i].DType || !bytes.Equal(g.Data, want[i].Data) {
			t.Fatalf("parameter %s: saved %s, loaded %s %s with other values", want[i].Name, want[i].DType, g.Name, g.DType)
		}
	}
	if d != api.Q8_0 {
		return
	}
	wide, err := checkpoint.LoadModel(t.Context(), dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: lm.Backend(), Weights: api.F32}})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range wide.(api.LocalModel).Parameters() {
		values := api.Float32s(p.Value)
		if want[i].DType == api.F32 {
			continue
		}
		exact := make([]float32, len(values))
		if err := api.DecodeFloat32(exact, want[i].DType, want[i].Data); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(values, exact) {
			t.Fatalf("parameter %s loaded as F32 does not hold the Q8_0 values", p.Name)
		}
	}
}
