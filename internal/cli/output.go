package cli

import (
	"bufio"
	"fmt"
	"io"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// fileOutput is the --out of a command that writes one file: "-" is the
// command's stdout; a device or FIFO is written in place; a regular file is
// replaced atomically (internal/atomicfile). Commands call check before any
// work, so that a bad destination fails at once rather than after the work.
type fileOutput struct {
	path   string
	stdout io.Writer
}

// check reports a destination that cannot be written.
func (o fileOutput) check() error {
	if o.path == "" {
		return fmt.Errorf("--out: no output file given: %w", api.ErrConfig)
	}
	if o.path == "-" {
		return nil
	}
	if err := atomicfile.Check(o.path); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// write writes what fill writes to the destination.
func (o fileOutput) write(fill func(w io.Writer) error) error {
	if o.path != "-" {
		return atomicfile.Write(o.path, fill)
	}
	w := bufio.NewWriterSize(o.stdout, 1<<20)
	if err := fill(w); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// checkOutDir reports an output directory (init, convert) that cannot be
// created or written.
func checkOutDir(dir string) error {
	if dir == "" || dir == "-" {
		return fmt.Errorf("--out %q: want an output directory: %w", dir, api.ErrConfig)
	}
	if err := atomicfile.CheckDir(dir); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}
