//go:build !(linux && (amd64 || arm64))

package driver

import (
	"errors"
	"runtime"
)

// CUDA's libraries exist for Linux on amd64 and arm64 only (the ones this
// package loads); elsewhere every load fails with a LoadError.

// DynamicLoading reports that libraries can be loaded here (Linux on amd64
// and arm64).
const DynamicLoading = false

var errNoLoader = errors.New("CUDA is not available on " + runtime.GOOS + "/" + runtime.GOARCH)

func sysOpen(string) (uintptr, error) { return 0, errNoLoader }

func sysSym(uintptr, string) (uintptr, error) { return 0, errNoLoader }

func sysBind(any, uintptr) { panic("driver: sysBind without a loader") }
