// Package atomicfile writes files so that readers see either the old file
// or the whole new one: the data goes to a temporary file in the same
// directory, which is fsync'd, renamed over the target, and the directory
// fsync'd. On any error the temporary file is removed and the target is
// untouched.
//
// Only regular files are replaced. A destination that is a character
// device, a FIFO or a socket (/dev/null, /dev/stdout, a named pipe) is
// written in place, since renaming over it would destroy it; a symbolic
// link to a regular file replaces the file it points to and keeps the link.
//
// The temporary files of writes in progress are remembered, so that a
// program stopping on a signal can remove them (RemoveTemps) before it
// exits.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Write creates or replaces path with the bytes fill writes. The new file
// gets the permissions of the file it replaces, or 0644.
func Write(path string, fill func(w io.Writer) error) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("write %s: is a directory", path)
	case err == nil && !st.Mode().IsRegular():
		return writeInPlace(path, fill)
	case err == nil:
		// A symbolic link to a regular file: replace the file, keep the link.
		if target, err := filepath.EvalSymlinks(path); err == nil {
			return replace(target, st.Mode().Perm(), fill)
		}
		return replace(path, st.Mode().Perm(), fill)
	case errors.Is(err, os.ErrNotExist):
		return replace(path, 0o644, fill)
	default:
		return fmt.Errorf("write %s: %w", path, err)
	}
}

// WriteFile creates or replaces path holding data.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Check reports whether Write(path, ...) can be expected to succeed, before
// a program spends time computing what it will write: path must not be a
// directory, and when it is (or would be) a regular file, its directory
// must exist and accept a new file (checked by creating and removing one).
func Check(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("output %s is a directory", path)
	case err == nil && !st.Mode().IsRegular():
		return nil // a device or FIFO is written in place
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("output %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if target, err := filepath.EvalSymlinks(path); err == nil {
		dir = filepath.Dir(target)
	}
	return checkDirWritable(dir)
}

// CheckDir reports whether dir can receive new files: it exists as a
// directory that accepts a new file, or it does not exist and its nearest
// existing ancestor is such a directory (os.MkdirAll can then create it).
func CheckDir(dir string) error {
	for d := filepath.Clean(dir); ; {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("output directory %s: %s is not a directory", dir, d)
			}
			return checkDirWritable(d)
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("output directory %s: %w", dir, err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("output directory %s: %w", dir, err)
		}
		d = parent
	}
}

// checkDirWritable creates and removes a file in dir.
func checkDirWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".densessm-check-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// writeInPlace writes fill's bytes into an existing non-regular file.
func writeInPlace(path string, fill func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w := bufio.NewWriterSize(wrap(f), 1<<20)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replace writes fill's bytes to a temporary file beside path and renames
// it over path.
func replace(path string, mode os.FileMode, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	temps.add(tmp)
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
		temps.remove(tmp)
	}()
	w := bufio.NewWriterSize(wrap(f), 1<<20)
	if err := fill(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// tempSet is the set of temporary files of writes in progress.
type tempSet struct {
	mu    sync.Mutex
	names map[string]struct{}
}

var temps = tempSet{names: map[string]struct{}{}}

func (s *tempSet) add(name string) {
	s.mu.Lock()
	s.names[name] = struct{}{}
	s.mu.Unlock()
}

func (s *tempSet) remove(name string) {
	s.mu.Lock()
	delete(s.names, name)
	s.mu.Unlock()
}

// RemoveTemps removes the temporary files of every write in progress, for
// a program about to exit on a signal while a write may still be running:
// the targets keep their previous contents. Writes still running afterwards
// fail.
func RemoveTemps() {
	temps.mu.Lock()
	defer temps.mu.Unlock()
	for name := range temps.names {
		os.Remove(name)
	}
}

// faultWrap, when set, wraps the file writer of every write; see
// InjectFault.
var (
	faultMu   sync.Mutex
	faultWrap func(io.Writer) io.Writer
)

func wrap(w io.Writer) io.Writer {
	faultMu.Lock()
	f := faultWrap
	faultMu.Unlock()
	if f == nil {
		return w
	}
	return f(w)
}

// FullDisk returns a wrap for InjectFault that makes the disk fill up
// after limit bytes: later writes fail with ENOSPC.
func FullDisk(limit int) func(io.Writer) io.Writer {
	return func(w io.Writer) io.Writer { return &fullDisk{w: w, left: limit} }
}

// fullDisk fails every write past its limit with ENOSPC, as a full disk.
type fullDisk struct {
	w    io.Writer
	left int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) > d.left {
		n, _ := d.w.Write(p[:d.left])
		d.left = 0
		return n, syscall.ENOSPC
	}
	d.left -= len(p)
	return d.w.Write(p)
}

// InjectFault makes every write in this process go through wrap(file) until
// restore is called: tests use it to make the disk fail (ENOSPC after N
// bytes) under any writer of the toolkit.
func InjectFault(wrap func(io.Writer) io.Writer) (restore func()) {
	faultMu.Lock()
	faultWrap = wrap
	faultMu.Unlock()
	return func() {
		faultMu.Lock()
		faultWrap = nil
		faultMu.Unlock()
	}
}
