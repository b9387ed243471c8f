//go:build linux && (amd64 || arm64)

package driver

import "github.com/ebitengine/purego"

// The dynamic loader, through purego: no cgo, so the package builds with
// CGO_ENABLED=0 and a machine without CUDA gets an error, not a link failure.

// DynamicLoading reports that libraries can be loaded here (Linux on amd64
// and arm64).
const DynamicLoading = true

func sysOpen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

func sysSym(handle uintptr, name string) (uintptr, error) {
	return purego.Dlsym(handle, name)
}

func sysBind(fptr any, addr uintptr) { purego.RegisterFunc(fptr, addr) }
