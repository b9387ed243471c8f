package retnet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// Tolerances of the parity checks against the PyTorch references, as
// max |got-want| / max |want| over the compared tensor (the loss: relative
// difference).
const (
	parityLogitsTol = 1e-4
	parityLossTol   = 1e-5
	parityGradTol   = 1e-3
)

// parityFixtures lists the model directories under testdata/ that
// scripts/make_retnet_fixtures.py wrote, the directory holding each one's
// reference.safetensors, and the architecture the config must select.
var parityFixtures = []struct{ dir, ref, arch string }{
	{"retnet-h2", "retnet-h2", NameRetNet},
	{"retnet-h3-odd", "retnet-h3-odd", NameRetNet},
	{"denseretnet-m1", "denseretnet-m1", NameDenseRetNet},
	{"denseretnet-m2", "denseretnet-m2", NameDenseRetNet},
	// The same weights as denseretnet-m2, as torch.save(model.state_dict()).
	{"denseretnet-m2-bin", "denseretnet-m2", NameDenseRetNet},
}

// parityRecurrentChunks are the chunk sizes whose chunkwise logits are
// compared with the reference's recurrent logits when the reference has no
// chunkwise form (the official DenseSSM code has none); the chunkwise form
// computes the recurrent form's values.
var parityRecurrentChunks = []int{3, 5}

// chunkwiseForwarder is the model's chunkwise form over whole sequences.
type chunkwiseForwarder interface {
	ForwardChunkwise(ctx context.Context, ids [][]int32, chunk int) (api.Tensor, error)
}

// parityReference is one reference.safetensors.
type parityReference struct {
	ids, targets [][]int32            // [B][T]
	parallel     []float32            // logits_parallel [B,T,V]
	recurrent    []float32            // logits_recurrent [B,T,V]
	chunkwise    map[int][]float32    // logits_chunkwise_<chunk> [B,T,V], by chunk size
	loss         float64              // mean cross-entropy of the parallel form
	grads        map[string][]float32 // grad.<name>, by parameter name
	gradShapes   map[string]api.Shape
}

// readParityReference reads dir/reference.safetensors.
func readParityReference(t *testing.T, dir string) *parityReference {
	t.Helper()
	ck, err := checkpoint.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	ref := &parityReference{
		chunkwise:  map[int][]float32{},
		grads:      map[string][]float32{},
		gradShapes: map[string]api.Shape{},
	}
	ref.ids = modeltest.Int32Rows(t, ck, "ids")
	ref.targets = modeltest.Int32Rows(t, ck, "targets")
	floats := func(name string) []float32 {
		v, err := ck.Float32s(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ref.parallel = floats("logits_parallel")
	ref.recurrent = floats("logits_recurrent")
	loss := floats("loss")
	if len(loss) != 1 {
		t.Fatalf("reference loss has %d values", len(loss))
	}
	ref.loss = float64(loss[0])
	for _, info := range ck.Tensors() {
		if name, ok := strings.CutPrefix(info.Name, "grad."); ok {
			ref.grads[name] = floats(info.Name)
			ref.gradShapes[name] = info.Shape
		}
		if n, ok := strings.CutPrefix(info.Name, "logits_chunkwise_"); ok {
			chunk, err := strconv.Atoi(n)
			if err != nil || chunk < 1 {
				t.Fatalf("reference tensor %q: no chunk size", info.Name)
			}
			ref.chunkwise[chunk] = floats(info.Name)
		}
	}
	return ref
}

// checkParityLogits compares logits with a reference and logs the error.
func checkParityLogits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	e := modeltest.RelErr(got, want)
	t.Logf("%s logits: relative error %.3g", what, e)
	if !(e <= parityLogitsTol) {
		t.Errorf("%s logits: relative error %.3g exceeds %g", what, e, parityLogitsTol)
	}
}

// parityValues returns the values of a logits tensor after checking its shape.
func parityValues(t *testing.T, what string, logits api.Tensor, shape api.Shape) []float32 {
	t.Helper()
	if !logits.Shape().Equal(shape) {
		t.Fatalf("%s logits: shape %v, want %v", what, logits.Shape(), shape)
	}
	return api.Float32s(logits)
}

// TestParityReference loads each fixture model with checkpoint.LoadModel and
// checks its parallel, chunkwise and recurrent logits, its loss and every
// parameter's gradient against torchscale (retnet-*) or the PyTorch
// reference of the official DenseSSM code (denseretnet-*).
func TestParityReference(t *testing.T) {
	for _, fx := range parityFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			checkParity(t, filepath.Join("testdata", fx.dir), filepath.Join("testdata", fx.ref), fx.arch)
		})
	}
}

func checkParity(t *testing.T, dir, refDir, arch string) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Config().ArchName(); got != arch {
		t.Errorf("config.json selected architecture %q, want %q", got, arch)
	}
	m, ok := loaded.(api.Trainable)
	if !ok {
		t.Fatalf("model %T is not trainable", loaded)
	}
	ref := readParityReference(t, refDir)
	B, T, V := len(ref.ids), len(ref.ids[0]), m.Config().Vocab()
	shape := api.Shape{B, T, V}
	if len(ref.parallel) != B*T*V {
		t.Fatalf("reference logits have %d values, want %d*%d*%d", len(ref.parallel), B, T, V)
	}

	out, err := m.Forward(ctx, ref.ids, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	checkParityLogits(t, "parallel", parityValues(t, "parallel", out, shape), ref.parallel)

	cw, ok := loaded.(chunkwiseForwarder)
	if !ok {
		t.Fatalf("model %T has no ForwardChunkwise", loaded)
	}
	chunks, against := ref.chunkwise, "chunkwise"
	if len(chunks) == 0 {
		chunks, against = map[int][]float32{}, "recurrent"
		for _, c := range parityRecurrentChunks {
			chunks[c] = ref.recurrent
		}
	}
	for _, c := range slices.Sorted(maps.Keys(chunks)) {
		out, err := cw.ForwardChunkwise(ctx, ref.ids, c)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("chunkwise (chunk %d, vs reference %s)", c, against)
		checkParityLogits(t, what, parityValues(t, what, out, shape), chunks[c])
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
		got := parityValues(t, "Step", logits, api.Shape{B, V})
		for bi := range B {
			copy(rec[(bi*T+ti)*V:(bi*T+ti+1)*V], got[bi*V:(bi+1)*V])
		}
	}
	checkParityLogits(t, "recurrent", rec, ref.recurrent)

	// Loss and gradients of the parallel form.
	m.ZeroGrad()
	loss, err := m.LossAndGrad(ctx, api.Batch{Inputs: ref.ids, Targets: ref.targets})
	if err != nil {
		t.Fatal(err)
	}
	e := math.Abs(loss-ref.loss) / math.Abs(ref.loss)
	t.Logf("loss %.7g, reference %.7g: relative error %.3g", loss, ref.loss, e)
	if !(e <= parityLossTol) {
		t.Errorf("loss %.7g, reference %.7g: relative error %.3g exceeds %g", loss, ref.loss, e, parityLossTol)
	}
	aliases, _ := loaded.(api.NameAliases)
	seen := map[string]bool{}
	worst, worstName := 0.0, ""
	grads := m.Grads()
	for _, g := range grads {
		name := parityRefName(g.Name, ref.grads, aliases)
		if name == "" {
			t.Errorf("gradient of %s: the reference has no such parameter", g.Name)
			continue
		}
		seen[name] = true
		if !g.Value.Shape().Equal(ref.gradShapes[name]) {
			t.Errorf("gradient of %s: shape %v, reference %v", g.Name, g.Value.Shape(), ref.gradShapes[name])
			continue
		}
		e := modeltest.RelErr(api.Float32s(g.Value), ref.grads[name])
		if !(e <= parityGradTol) {
			t.Errorf("gradient of %s: relative error %.3g exceeds %g", g.Name, e, parityGradTol)
		}
		if !(e <= worst) {
			worst, worstName = e, g.Name
		}
	}
	for name := range ref.grads {
		if !seen[name] {
			t.Errorf("the reference has a gradient for %s, the model has no such parameter", name)
		}
	}
	t.Logf("gradients: worst relative error %.3g (%s) over %d parameters", worst, worstName, len(grads))
}

// parityRefName returns the reference's name for the model parameter name:
// the name itself or the first of its checkpoint aliases the reference has,
// or "" when it has none.
func parityRefName(name string, ref map[string][]float32, aliases api.NameAliases) string {
	if _, ok := ref[name]; ok {
		return name
	}
	if aliases == nil {
		return ""
	}
	for _, alt := range aliases.CheckpointAliases(name) {
		if _, ok := ref[alt]; ok {
			return alt
		}
	}
	return ""
}

// TestParityEvilPickle loads a pytorch_model.bin whose pickle calls
// os.system: loading must fail before anything runs, with an error that
// names the refused global.
func TestParityEvilPickle(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	_, err := checkpoint.LoadModel(context.Background(), filepath.Join("testdata", "evil"), checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err == nil {
		t.Fatal("a pickle that calls os.system loaded without error")
	}
	if !errors.Is(err, api.ErrUnsupported) && !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("error %q wraps neither ErrUnsupported nor ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "os.system") {
		t.Errorf("error %q does not name the refused global os.system", err)
	}
}
