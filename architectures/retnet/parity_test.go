package retnet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/backendtest"
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

// TestParityReference loads each fixture model with checkpoint.LoadModel and
// checks its parallel, chunkwise and recurrent logits, its loss and every
// parameter's gradient against torchscale (retnet-*) or the PyTorch
// reference of the official DenseSSM code (denseretnet-*), on the CPU
// backend's fused kernels and on nn's references of them
// (backendtest.KernelsOnly).
func TestParityReference(t *testing.T) {
	for _, fx := range parityFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			dir, ref := filepath.Join("testdata", fx.dir), filepath.Join("testdata", fx.ref)
			b := cpu.New(api.BackendOptions{Threads: 1})
			t.Run("fused", func(t *testing.T) { checkParity(t, dir, ref, fx.arch, b) })
			t.Run("reference", func(t *testing.T) { checkParity(t, dir, ref, fx.arch, backendtest.KernelsOnly(b)) })
		})
	}
}

// checkParity checks the model in dir, which must load as arch, against
// refDir/reference.safetensors, on backend b.
func checkParity(t *testing.T, dir, refDir, arch string, b api.Backend) {
	ctx := context.Background()
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
	ref := modeltest.ReadReference(t, refDir)
	B, T, V := len(ref.IDs), len(ref.IDs[0]), m.Config().Vocab()
	shape := api.Shape{B, T, V}
	parallel, recurrent := ref.Logits(t, "logits_parallel", V), ref.Logits(t, "logits_recurrent", V)

	out, err := m.Forward(ctx, ref.IDs, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	modeltest.CheckLogits(t, "parallel", modeltest.Values(t, "parallel", out, shape), parallel, parityLogitsTol)

	cw, ok := loaded.(chunkwiseForwarder)
	if !ok {
		t.Fatalf("model %T has no ForwardChunkwise", loaded)
	}
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
		for _, c := range parityRecurrentChunks {
			chunks[c] = recurrent
		}
	}
	for _, c := range slices.Sorted(maps.Keys(chunks)) {
		out, err := cw.ForwardChunkwise(ctx, ref.IDs, c)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("chunkwise (chunk %d, vs reference %s)", c, against)
		modeltest.CheckLogits(t, what, modeltest.Values(t, what, out, shape), chunks[c], parityLogitsTol)
	}

	modeltest.CheckLogits(t, "recurrent", modeltest.RecurrentLogits(t, m, ref.IDs), recurrent, parityLogitsTol)
	modeltest.CheckLossAndGrads(t, m, ref, parityLossTol, parityGradTol)
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
