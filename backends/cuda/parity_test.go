package cuda

import (
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
)

// parityFixtures are the architectures' PyTorch parity fixtures (written by
// scripts/make_mamba_fixtures.py and make_retnet_fixtures.py): the model
// directory, the directory of its reference.safetensors, and the
// architecture its config selects.
var parityFixtures = []struct{ dir, ref, arch string }{
	{"mamba/testdata/tied", "mamba/testdata/tied", "mamba"},
	{"mamba/testdata/untied-bias", "mamba/testdata/untied-bias", "mamba"},
	{"retnet/testdata/retnet-h2", "retnet/testdata/retnet-h2", "retnet"},
	{"retnet/testdata/retnet-h3-odd", "retnet/testdata/retnet-h3-odd", "retnet"},
	{"retnet/testdata/denseretnet-m1", "retnet/testdata/denseretnet-m1", "denseretnet"},
	{"retnet/testdata/denseretnet-m2", "retnet/testdata/denseretnet-m2", "denseretnet"},
}

// checkParity runs modeltest.CheckParity (the parallel, chunkwise and
// recurrent logits to 1e-4, the loss to 1e-5 and the gradients to 1e-3
// against transformers, torchscale and the official DenseSSM code) for
// every fixture on b.
func checkParity(t *testing.T, b api.Backend) {
	for _, fx := range parityFixtures {
		t.Run(filepath.Base(fx.dir), func(t *testing.T) {
			root := filepath.Join("..", "..", "architectures")
			modeltest.CheckParity(t, filepath.Join(root, fx.dir), filepath.Join(root, fx.ref), fx.arch, b)
		})
	}
}

// TestParityFake checks the parity fixtures on the fake device.
func TestParityFake(t *testing.T) {
	b := newFake(t, Options{})
	checkParity(t, b)
	if h := b.HostOps(); len(h) != 0 {
		t.Errorf("host fallback: %v", h)
	}
}

// TestParityDevice checks the parity fixtures on the GPU.
func TestParityDevice(t *testing.T) { checkParity(t, newDevice(t)) }
