package backendtest

import (
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// TestKernelsOnly checks that KernelsOnly hides the fused kernels of the
// CPU backend, that the groups of the fused kernels are skipped on it, and
// that every other group runs and passes.
func TestKernelsOnly(t *testing.T) {
	b := KernelsOnly(cpu.New(api.BackendOptions{Threads: 2}))
	_, conv := b.(api.ConvKernels)
	_, scan := b.(api.ScanKernels)
	_, rot := b.(api.RotaryKernels)
	_, ret := b.(api.RetentionKernels)
	if conv || scan || rot || ret {
		t.Fatalf("KernelsOnly exposes fused kernels: conv %t, scan %t, rotary %t, retention %t", conv, scan, rot, ret)
	}
	fused := func(name string) bool {
		for _, p := range []string{"conv1d", "scan", "rotary", "retention"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, c := range cases {
		var skipped bool
		t.Run(c.name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			c.run(t, b)
		})
		if skipped != fused(c.name) {
			t.Errorf("group %s: skipped %t on a backend without fused kernels", c.name, skipped)
		}
	}
}
