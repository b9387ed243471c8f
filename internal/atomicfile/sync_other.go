//go:build !(linux || darwin)

package atomicfile

// syncDir is a no-op: not every platform can fsync a directory.
func syncDir(string) error { return nil }
