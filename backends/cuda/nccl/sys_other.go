//go:build !(linux && (amd64 || arm64))

package nccl

import (
	"errors"
	"runtime"
)

// NCCL exists for Linux on amd64 and arm64 only; elsewhere every load
// fails with a LoadError.

const sysSupported = false

var errNoLoader = errors.New("NCCL is not available on " + runtime.GOOS + "/" + runtime.GOARCH)

func sysOpen(string) (uintptr, error) { return 0, errNoLoader }

func sysSym(uintptr, string) (uintptr, error) { return 0, errNoLoader }

func sysBind(any, uintptr) { panic("nccl: sysBind without a loader") }
