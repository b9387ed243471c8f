//go:build linux && (amd64 || arm64)

package nccl

import "github.com/ebitengine/purego"

// The dynamic loader, through purego, as in backends/cuda/driver: no cgo,
// so the package builds with CGO_ENABLED=0 and a machine without NCCL
// gets an error, not a link failure.

const sysSupported = true

func sysOpen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

func sysSym(handle uintptr, name string) (uintptr, error) {
	return purego.Dlsym(handle, name)
}

func sysBind(fptr any, addr uintptr) { purego.RegisterFunc(fptr, addr) }
