package driver

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// RequireNVRTCEnv, set to 1, turns a missing NVRTC from a skip into a
// failure (make cuda-test sets it, after installing the wheel).
const RequireNVRTCEnv = "DENSESSM_REQUIRE_NVRTC"

// loadNVRTCOrSkip returns NVRTC, or skips saying where it was looked for.
func loadNVRTCOrSkip(t *testing.T) *NVRTC {
	t.Helper()
	n, err := LoadNVRTC()
	if err != nil {
		if !errors.Is(err, api.ErrUnsupported) {
			t.Fatalf("LoadNVRTC: %v does not wrap api.ErrUnsupported", err)
		}
		if os.Getenv(RequireNVRTCEnv) == "1" {
			t.Fatalf("%s=1 and %v", RequireNVRTCEnv, err)
		}
		t.Skipf("SKIPPED: %v; `make cuda-test` installs the nvidia-cuda-nvrtc wheel and sets %s", err, NVRTCEnv)
	}
	return n
}

func TestNVRTCCompile(t *testing.T) {
	n := loadNVRTCOrSkip(t)
	archs, err := n.SupportedArchs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NVRTC %d.%d at %s; real architectures %v", n.Major, n.Minor, n.Path, archs)
	src := `#include "twice.cuh"
extern "C" __global__ void scale(float* y, const float* x, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] = twice(x[i]);
}`
	hdr := []Header{{Name: "twice.cuh", Source: "__device__ inline float twice(float v) { return 2.0f * v; }\n"}}
	ptx, _, err := n.Compile("scale.cu", src, hdr, []string{"--gpu-architecture=compute_80"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".target sm_80", ".entry scale("} {
		if !strings.Contains(string(ptx), want) {
			t.Errorf("PTX lacks %q:\n%s", want, ptx)
		}
	}
	cubin, _, err := n.Compile("scale.cu", src, hdr, []string{"--gpu-architecture=sm_90"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cubin) < 4 || string(cubin[:4]) != "\x7fELF" {
		t.Errorf("CUBIN is not an ELF image: % x", cubin[:min(len(cubin), 8)])
	}
	// A broken source: the error carries the log, which names the line.
	_, _, err = n.Compile("broken.cu", "extern \"C\" __global__ void k() { undefined_thing(); }", nil, []string{"--gpu-architecture=compute_80"}, false)
	var ne *NVRTCError
	if !errors.As(err, &ne) || !strings.Contains(ne.Log, "undefined_thing") || !strings.Contains(err.Error(), "broken.cu") {
		t.Errorf("compile error: %v", err)
	}
}
