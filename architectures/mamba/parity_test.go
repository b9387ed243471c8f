package mamba

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// Tolerances of the parity checks against transformers, as max |got-want| /
// max |want| over the compared tensor.
const (
	parityLogitsTol = 1e-4
	parityLossTol   = 1e-5
	parityGradTol   = 1e-3
)

// reference is what scripts/make_mamba_fixtures.py recorded from
// transformers' MambaForCausalLM for one fixture.
type reference struct {
	ids, targets [][]int32 // [B][T]
	logits       []float32 // [B,T,V]
	loss         float64
	grads        map[string][]float32 // by parameter name
	gradShapes   map[string]api.Shape
}

// readReference reads dir/reference.safetensors.
func readReference(t *testing.T, dir string) *reference {
	t.Helper()
	ck, err := checkpoint.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	ref := &reference{grads: map[string][]float32{}, gradShapes: map[string]api.Shape{}}
	ref.ids = modeltest.Int32Rows(t, ck, "ids")
	ref.targets = modeltest.Int32Rows(t, ck, "targets")
	if ref.logits, err = ck.Float32s("logits"); err != nil {
		t.Fatal(err)
	}
	loss, err := ck.Float32s("loss")
	if err != nil {
		t.Fatal(err)
	}
	if len(loss) != 1 {
		t.Fatalf("reference loss has %d values", len(loss))
	}
	ref.loss = float64(loss[0])
	for _, info := range ck.Tensors() {
		name, ok := strings.CutPrefix(info.Name, "grad.")
		if !ok {
			continue
		}
		if ref.grads[name], err = ck.Float32s(info.Name); err != nil {
			t.Fatal(err)
		}
		ref.gradShapes[name] = info.Shape
	}
	return ref
}

// TestParityTransformers loads each model that transformers saved under
// testdata/ and checks the parallel logits, the recurrent logits, the loss
// and every parameter's gradient against transformers' own results.
func TestParityTransformers(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*", "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("found %d fixtures under testdata/, want at least 2 (run make mamba-fixtures)", len(dirs))
	}
	for _, file := range dirs {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) { checkParity(t, dir) })
	}
}

func checkParity(t *testing.T, dir string) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 2})
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := loaded.(api.Trainable)
	if !ok {
		t.Fatalf("model %T is not trainable", loaded)
	}
	ref := readReference(t, dir)
	B, T, V := len(ref.ids), len(ref.ids[0]), m.Config().Vocab()
	if len(ref.logits) != B*T*V {
		t.Fatalf("reference logits have %d values, want %d*%d*%d", len(ref.logits), B, T, V)
	}

	// Parallel form.
	out, err := m.Forward(ctx, ref.ids, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.Shape{B, T, V}); !out.Shape().Equal(want) {
		t.Fatalf("Forward logits %v, want %v", out.Shape(), want)
	}
	e := modeltest.RelErr(api.Float32s(out), ref.logits)
	t.Logf("parallel logits: relative error %.3g", e)
	if !(e <= parityLogitsTol) {
		t.Errorf("parallel logits: relative error %.3g exceeds %g", e, parityLogitsTol)
	}

	// Recurrent form, one token at a time, gathered into [B,T,V].
	s, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]float32, B*T*V)
	step := make([]int32, B)
	for ti := range T {
		for bi := range B {
			step[bi] = ref.ids[bi][ti]
		}
		logits, err := m.Step(ctx, s, step)
		if err != nil {
			t.Fatal(err)
		}
		got := api.Float32s(logits)
		for bi := range B {
			copy(rec[(bi*T+ti)*V:(bi*T+ti+1)*V], got[bi*V:(bi+1)*V])
		}
	}
	e = modeltest.RelErr(rec, ref.logits)
	t.Logf("recurrent logits: relative error %.3g", e)
	if !(e <= parityLogitsTol) {
		t.Errorf("recurrent logits: relative error %.3g exceeds %g", e, parityLogitsTol)
	}

	// Loss and gradients.
	m.ZeroGrad()
	loss, err := m.LossAndGrad(ctx, api.Batch{Inputs: ref.ids, Targets: ref.targets})
	if err != nil {
		t.Fatal(err)
	}
	e = math.Abs(loss-ref.loss) / math.Abs(ref.loss)
	t.Logf("loss %.7g, transformers %.7g: relative error %.3g", loss, ref.loss, e)
	if !(e <= parityLossTol) {
		t.Errorf("loss %.7g, transformers %.7g: relative error %.3g exceeds %g", loss, ref.loss, e, parityLossTol)
	}
	grads := m.Grads()
	var names []string
	worst, worstName := 0.0, ""
	for _, g := range grads {
		names = append(names, g.Name)
		want, ok := ref.grads[g.Name]
		if !ok {
			t.Errorf("gradient of %s: transformers has no such parameter", g.Name)
			continue
		}
		if !g.Value.Shape().Equal(ref.gradShapes[g.Name]) {
			t.Errorf("gradient of %s: shape %v, transformers %v", g.Name, g.Value.Shape(), ref.gradShapes[g.Name])
			continue
		}
		e := modeltest.RelErr(api.Float32s(g.Value), want)
		if !(e <= parityGradTol) {
			t.Errorf("gradient of %s: relative error %.3g exceeds %g", g.Name, e, parityGradTol)
		}
		if !(e <= worst) {
			worst, worstName = e, g.Name
		}
	}
	for name := range ref.grads {
		if !slices.Contains(names, name) {
			t.Errorf("transformers has a gradient for %s, the model has no such parameter", name)
		}
	}
	t.Logf("gradients: worst relative error %.3g (%s) over %d parameters", worst, worstName, len(grads))
}
