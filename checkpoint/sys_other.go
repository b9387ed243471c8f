//go:build !(linux || darwin)

package checkpoint

import "os"

// mapFile reads the first size bytes of f into memory: this platform has no
// memory mapping wired up here. mapped is always false.
func mapFile(f *os.File, size int) (data []byte, release func() error, mapped bool, err error) {
	data, release, err = readFile(f, size)
	return data, release, false, err
}
