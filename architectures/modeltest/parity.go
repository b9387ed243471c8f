package modeltest

import (
	"context"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// Reference is what a fixture script recorded from a reference
// implementation in a reference.safetensors: the inputs, the mean
// cross-entropy of the parallel form, every parameter's gradient, and the
// other tensors (the logits of the reference's forms) by name.
type Reference struct {
	IDs, Targets [][]int32 // ids and targets [B,T], as B rows
	Loss         float64   // loss
	// Grads holds each grad.<name> tensor under the parameter's name, and
	// GradShapes its shape.
	Grads      map[string][]float32
	GradShapes map[string]api.Shape
	// Tensors holds every other tensor ("logits", "logits_parallel", ...)
	// widened to float32.
	Tensors map[string][]float32
}

// ReadReference reads dir/reference.safetensors.
func ReadReference(t testing.TB, dir string) *Reference {
	t.Helper()
	ck, err := checkpoint.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	floats := func(name string) []float32 {
		t.Helper()
		v, err := ck.Float32s(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ref := &Reference{
		IDs: Int32Rows(t, ck, "ids"), Targets: Int32Rows(t, ck, "targets"),
		Grads: map[string][]float32{}, GradShapes: map[string]api.Shape{}, Tensors: map[string][]float32{},
	}
	loss := floats("loss")
	if len(loss) != 1 {
		t.Fatalf("reference loss has %d values", len(loss))
	}
	ref.Loss = float64(loss[0])
	for _, info := range ck.Tensors() {
		switch name, grad := strings.CutPrefix(info.Name, "grad."); {
		case grad:
			ref.Grads[name] = floats(info.Name)
			ref.GradShapes[name] = info.Shape
		case info.Name != "ids" && info.Name != "targets" && info.Name != "loss":
			ref.Tensors[info.Name] = floats(info.Name)
		}
	}
	return ref
}

// Logits returns the reference's tensor name after checking that it holds
// logits [B,T,V] for its ids and vocabulary V.
func (r *Reference) Logits(t testing.TB, name string, V int) []float32 {
	t.Helper()
	v, ok := r.Tensors[name]
	if B, T := len(r.IDs), len(r.IDs[0]); !ok || len(v) != B*T*V {
		t.Fatalf("reference %s has %d values, want %d*%d*%d", name, len(v), B, T, V)
	}
	return v
}

// CheckLogits fails t when got is further than tol from want by RelErr,
// and logs the error.
func CheckLogits(t testing.TB, what string, got, want []float32, tol float64) {
	t.Helper()
	e := RelErr(got, want)
	t.Logf("%s logits: relative error %.3g", what, e)
	if !(e <= tol) {
		t.Errorf("%s logits: relative error %.3g exceeds %g", what, e, tol)
	}
}

// Values returns the values of logits after checking that its shape is
// shape.
func Values(t testing.TB, what string, logits api.Tensor, shape api.Shape) []float32 {
	t.Helper()
	if !logits.Shape().Equal(shape) {
		t.Fatalf("%s logits: shape %v, want %v", what, logits.Shape(), shape)
	}
	return api.Float32s(logits)
}

// RecurrentLogits runs ids [B][T] through m one token at a time from an
// empty state and returns the logits gathered into [B,T,V].
func RecurrentLogits(t testing.TB, m api.Model, ids [][]int32) []float32 {
	t.Helper()
	B, T, V := len(ids), len(ids[0]), m.Config().Vocab()
	s, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, B*T*V)
	step := make([]int32, B)
	for ti := range T {
		for bi := range B {
			step[bi] = ids[bi][ti]
		}
		logits, err := m.Step(context.Background(), s, step)
		if err != nil {
			t.Fatal(err)
		}
		got := Values(t, "Step", logits, api.Shape{B, V})
		for bi := range B {
			copy(out[(bi*T+ti)*V:(bi*T+ti+1)*V], got[bi*V:(bi+1)*V])
		}
	}
	return out
}

// CheckLossAndGrads runs m's LossAndGrad on the reference's batch and
// checks the loss (relative difference within lossTol) and every
// parameter's gradient (RelErr within gradTol) against it. A parameter is
// looked up in the reference by its name, else by its checkpoint aliases
// (api.NameAliases); a parameter without a reference gradient, and a
// reference gradient without a parameter, are errors.
func CheckLossAndGrads(t testing.TB, m api.Trainable, ref *Reference, lossTol, gradTol float64) {
	t.Helper()
	m.ZeroGrad()
	loss, err := m.LossAndGrad(context.Background(), api.Batch{Inputs: ref.IDs, Targets: ref.Targets})
	if err != nil {
		t.Fatal(err)
	}
	e := math.Abs(loss-ref.Loss) / math.Abs(ref.Loss)
	t.Logf("loss %.7g, reference %.7g: relative error %.3g", loss, ref.Loss, e)
	if !(e <= lossTol) {
		t.Errorf("loss %.7g, reference %.7g: relative error %.3g exceeds %g", loss, ref.Loss, e, lossTol)
	}
	aliases, _ := m.(api.NameAliases)
	refName := func(name string) string {
		if _, ok := ref.Grads[name]; ok {
			return name
		}
		if aliases != nil {
			for _, alt := range aliases.CheckpointAliases(name) {
				if _, ok := ref.Grads[alt]; ok {
					return alt
				}
			}
		}
		return ""
	}
	seen := map[string]bool{}
	worst, worstName := 0.0, ""
	grads := m.Grads()
	for _, g := range grads {
		name := refName(g.Name)
		if name == "" {
			t.Errorf("gradient of %s: the reference has no such parameter", g.Name)
			continue
		}
		seen[name] = true
		if !g.Value.Shape().Equal(ref.GradShapes[name]) {
			t.Errorf("gradient of %s: shape %v, reference %v", g.Name, g.Value.Shape(), ref.GradShapes[name])
			continue
		}
		e := RelErr(api.Float32s(g.Value), ref.Grads[name])
		if !(e <= gradTol) {
			t.Errorf("gradient of %s: relative error %.3g exceeds %g", g.Name, e, gradTol)
		}
		if !(e <= worst) {
			worst, worstName = e, g.Name
		}
	}
	for name := range ref.Grads {
		if !seen[name] {
			t.Errorf("the reference has a gradient for %s, the model has no such parameter", name)
		}
	}
	t.Logf("gradients: worst relative error %.3g (%s) over %d parameters", worst, worstName, len(grads))
}

// SameLogits fails t unless want and got give bit-identical parallel
// logits for a few tokens.
func SameLogits(t testing.TB, want, got api.Model) {
	t.Helper()
	ctx := context.Background()
	ids := [][]int32{{1, 5, 9, 2, 7, 0, 3, 77}}
	for i := range ids[0] {
		ids[0][i] %= int32(want.Config().Vocab())
	}
	w, err := want.Forward(ctx, ids, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Forward(ctx, ids, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	wv, gv := api.Float32s(w), api.Float32s(g)
	if len(wv) != len(gv) {
		t.Fatalf("%d logits, want %d", len(gv), len(wv))
	}
	for i := range wv {
		if math.Float32bits(wv[i]) != math.Float32bits(gv[i]) {
			t.Fatalf("logit %d: %g, want %g", i, gv[i], wv[i])
		}
	}
}

// CheckSaveLoad saves m with checkpoint.SaveModel, loads it back on b with
// checkpoint.LoadModel, and checks that the loaded model has m's
// architecture and gives m's logits bit for bit.
func CheckSaveLoad(t *testing.T, m api.Model, b api.Backend) {
	t.Helper()
	dir := t.TempDir()
	if err := checkpoint.SaveModel(t.Context(), dir, m); err != nil {
		t.Fatal(err)
	}
	loaded, err := checkpoint.LoadModel(t.Context(), dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loaded.Config().ArchName(), m.Config().ArchName(); got != want {
		t.Errorf("saved as %q, loaded as %q", want, got)
	}
	SameLogits(t, m, loaded)
}

// Tolerances of CheckParity against a PyTorch reference, as max |got-want|
// / max |want| over the compared tensor (the loss: relative difference).
const (
	ParityLogitsTol = 1e-4
	ParityLossTol   = 1e-5
	ParityGradTol   = 1e-3
)

// parityChunks are the chunk sizes of the chunkwise form compared with a
// reference that recorded no chunkwise logits of its own (the official
// DenseSSM code and transformers have none): the chunkwise form computes
// the recurrent form's values.
var parityChunks = []int{3, 5}

// CheckParity loads the fixture model in dir (a checkpoint the fixture
// scripts wrote) onto b, checks that its config selects arch, and checks it
// against the reference.safetensors in refDir:
//   - the parallel form against "logits_parallel" (or "logits");
//   - the chunkwise form, when the model has one (ForwardChunkwise), for
//     each "logits_chunkwise_N" the reference recorded, or else for chunks
//     of 3 and 5 against the recurrent logits;
//   - recurrent steps against "logits_recurrent" (or "logits");
//   - the loss and every parameter's gradient.
//
// The parity tests of the architectures run it on the CPU backend, and
// those of other backends (backends/cuda) on theirs, from the same
// fixtures.
func CheckParity(t *testing.T, dir, refDir, arch string, b api.Backend) {
	t.Helper()
	ctx := context.Background()
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if got := loaded.Config().ArchName(); got != arch {
		t.Errorf("config.json selected architecture %q, want %q", got, arch)
	}
	m, ok := loaded.(api.Trainable)
	if !ok {
		t.Fatalf("model %T is not trainable", loaded)
	}
	ref := ReadReference(t, refDir)
	B, T, V := len(ref.IDs), len(ref.IDs[0]), m.Config().Vocab()
	shape := api.Shape{B, T, V}
	first := func(names ...string) []float32 {
		for _, n := range names {
			if _, ok := ref.Tensors[n]; ok {
				return ref.Logits(t, n, V)
			}
		}
		t.Fatalf("the reference has none of %v", names)
		return nil
	}
	parallel, recurrent := first("logits_parallel", "logits"), first("logits_recurrent", "logits")

	out, err := m.Forward(ctx, ref.IDs, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	CheckLogits(t, "parallel", Values(t, "parallel", out, shape), parallel, ParityLogitsTol)

	if cw, ok := loaded.(interface {
		ForwardChunkwise(ctx context.Context, ids [][]int32, chunk int) (api.Tensor, error)
	}); ok {
		chunks, against := map[int][]float32{}, "chunkwise"
		for name := range ref.Tensors {
			if n, ok := strings.CutPrefix(name, "logits_chunkwise_"); ok {
				chunk, err := strconv.Atoi(n)
				if err != nil || chunk < 1 {
					t.Fatalf("reference tensor %q: no chunk size", name)
				}
				chunks[chunk] = ref.Logits(t, name, V)
			}
		}
		if len(chunks) == 0 {
			against = "recurrent"
			for _, c := range parityChunks {
				chunks[c] = recurrent
			}
		}
		for _, c := range slices.Sorted(maps.Keys(chunks)) {
			out, err := cw.ForwardChunkwise(ctx, ref.IDs, c)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("chunkwise (chunk %d, vs reference %s)", c, against)
			CheckLogits(t, what, Values(t, what, out, shape), chunks[c], ParityLogitsTol)
		}
	}

	CheckLogits(t, "recurrent", RecurrentLogits(t, m, ref.IDs), recurrent, ParityLogitsTol)
	CheckLossAndGrads(t, m, ref, ParityLossTol, ParityGradTol)
}
