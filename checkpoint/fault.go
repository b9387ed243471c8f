package checkpoint

import (
	"fmt"
	"runtime/debug"

	"github.com/densessm/densessm/api"
)

// guardFault runs fn, which reads mapped file memory, and turns a memory
// fault (the file at path was truncated after it was mapped) into an error
// wrapping api.ErrCorrupt instead of a crash. Other panics pass through.
func guardFault(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if fault, ok := r.(interface{ Addr() uintptr }); ok {
			err = fmt.Errorf("checkpoint %s: memory fault reading the mapped file (was it truncated?): %v: %w", path, fault, api.ErrCorrupt)
			return
		}
		panic(r)
	}()
	return fn()
}
