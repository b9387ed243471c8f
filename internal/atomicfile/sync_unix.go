//go:build linux || darwin

package atomicfile

import "os"

// syncDir flushes the directory entry changes of dir (a rename) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
