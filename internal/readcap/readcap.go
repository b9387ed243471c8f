// Package readcap reads small files (configs, indexes, vocabularies) whole,
// with a cap on their size, so that a path naming something unexpectedly
// large or endless (a multi-gigabyte file where a config was expected,
// /dev/zero, a pipe that keeps writing) gives a clear error instead of
// exhausting memory.
package readcap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"

	"github.com/densessm/densessm/api"
)

// File returns the contents of the file at path, which may hold at most max
// bytes. A regular file larger than max is refused from its size, without
// reading it; other files (character devices such as /dev/stdin or
// /dev/zero, FIFOs) are read until max+1 bytes have arrived. Every error
// names path:
//
//   - a file over the cap wraps api.ErrOutOfRange and names the cap;
//   - a missing file wraps api.ErrNotFound (and fs.ErrNotExist);
//   - a directory wraps api.ErrNotFound;
//   - other open or read errors are returned wrapped as they are.
//
// max must not be negative.
func File(path string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("read %s: negative size cap %d: %w", path, max, api.ErrOutOfRange)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w: %w", path, err, api.ErrNotFound)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("read %s: is a directory, not a file: %w", path, api.ErrNotFound)
	}
	size := st.Size()
	if st.Mode().IsRegular() && size > max {
		return nil, fmt.Errorf("read %s: %d bytes, larger than the %s cap: %w", path, size, sizeText(max), api.ErrOutOfRange)
	}
	// The size of a regular file only sizes the buffer: the file may grow
	// while it is read, and the limited reader enforces the cap anyway.
	var buf bytes.Buffer
	if st.Mode().IsRegular() {
		// MinRead spare bytes let the final Read find EOF without growing.
		buf.Grow(int(min(size, max, 1<<30)) + bytes.MinRead)
	}
	limit := max + 1 // one byte past the cap tells a file over it
	if limit < 0 {
		limit = math.MaxInt64
	}
	if _, err := buf.ReadFrom(io.LimitReader(f, limit)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("read %s: larger than the %s cap: %w", path, sizeText(max), api.ErrOutOfRange)
	}
	return buf.Bytes(), nil
}

// sizeText formats a byte count in the largest binary unit that divides it
// exactly ("16 MiB", "1536 KiB", "100 bytes").
func sizeText(n int64) string {
	unit := "bytes"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n == 0 || n%1024 != 0 {
			break
		}
		n, unit = n/1024, u
	}
	if unit == "bytes" && n == 1 {
		unit = "byte"
	}
	return fmt.Sprintf("%d %s", n, unit)
}
