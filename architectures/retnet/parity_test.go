package retnet

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
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

// TestParityReference loads each fixture model with checkpoint.LoadModel and
// checks its parallel, chunkwise and recurrent logits, its loss and every
// parameter's gradient against torchscale (retnet-*) or the PyTorch
// reference of the official DenseSSM code (denseretnet-*), on the CPU
// backend's fused kernels and on nn's references of them
// (backendtest.KernelsOnly), with modeltest.CheckParity.
func TestParityReference(t *testing.T) {
	for _, fx := range parityFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			dir, ref := filepath.Join("testdata", fx.dir), filepath.Join("testdata", fx.ref)
			b := cpu.New(api.BackendOptions{Threads: 1})
			t.Run("fused", func(t *testing.T) { modeltest.CheckParity(t, dir, ref, fx.arch, b) })
			t.Run("reference", func(t *testing.T) { modeltest.CheckParity(t, dir, ref, fx.arch, backendtest.KernelsOnly(b)) })
		})
	}
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
