package cuda

import (
	"errors"
	"os"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// TestChooseKernels checks how the GPU's kernels are built: the prebuilt
// PTX with DENSESSM_CUDA_PREBUILT=1 (or without NVRTC) on a device of
// compute capability 8.0 or newer, a refusal on an older one, and NVRTC's
// CUBIN for the device when NVRTC loads.
func TestChooseKernels(t *testing.T) {
	t.Setenv(PrebuiltEnv, "1")
	d := &realDevice{name: "test GPU", arch: 90}
	if err := d.chooseKernels(); err != nil || d.comp != nil || d.target != kernels.PrebuiltTarget || d.noNVRTC == nil {
		t.Fatalf("prebuilt on 9.0: err %v, compiler %v, target %v, reason %v", err, d.comp, d.target, d.noNVRTC)
	}
	d = &realDevice{name: "test GPU", arch: 75}
	if err := d.chooseKernels(); !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("prebuilt on 7.5: %v, want ErrUnsupported", err)
	}

	t.Setenv(PrebuiltEnv, "")
	if _, err := driver.LoadNVRTC(); err != nil {
		if os.Getenv("DENSESSM_REQUIRE_NVRTC") == "1" {
			t.Fatal(err)
		}
		t.Skipf("SKIPPED the NVRTC half: %v", err)
	}
	d = &realDevice{name: "test GPU", arch: 90}
	if err := d.chooseKernels(); err != nil || d.comp == nil || d.target != (kernels.Target{Arch: 90, CUBIN: true}) {
		t.Fatalf("with NVRTC on 9.0: err %v, compiler %v, target %v", err, d.comp, d.target)
	}
}
