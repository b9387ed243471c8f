// Command densessm-backend-cuda is the CUDA backend served out of process:
// a densessm plugin that builds and runs every built-in architecture on
// the backend "cuda" (package backends/cuda, in the plugin's process), so
// that the densessm binary itself links nothing of CUDA.
//
// Build it onto the plugin path (CGO_ENABLED=0 is enough: libcuda, NVRTC
// and cuBLAS are loaded at run time) and select it with --backend:
//
//	CGO_ENABLED=0 go build -o ~/.config/densessm/plugins/ ./cmd/densessm-backend-cuda
//	densessm generate --backend cuda "func main() {"
//
// Without a CUDA driver or device the plugin still starts, and building a
// model on it fails with the driver loader's error ("no CUDA driver found
// (looked for ...)", wrapping api.ErrUnsupported). DENSESSM_CUDA_FAKE=1
// runs it on the fake device in host memory (for tests only), and
// DENSESSM_CUDA_HOST_FALLBACK=0 makes the ops without a CUDA kernel fail
// instead of running on the host (docs/cuda.md).
package main

import (
	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cuda" // registers "cuda"
	"github.com/densessm/densessm/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{
		Name:          "cuda",
		Version:       "0.1.0",
		Architectures: api.Architectures(),
		Backends:      []string{"cuda"},
	})
}
