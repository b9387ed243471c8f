//go:build linux || darwin

package checkpoint

import (
	"os"
	"syscall"
)

// mapFile returns the first size bytes of f, memory-mapped read-only, and the
// function that releases them. Where the mapping fails it falls back to
// reading the file into memory; mapped reports which happened.
func mapFile(f *os.File, size int) (data []byte, release func() error, mapped bool, err error) {
	data, err = syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		data, release, err = readFile(f, size)
		return data, release, false, err
	}
	return data, func() error { return syscall.Munmap(data) }, true, nil
}
