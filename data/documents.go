package data

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/densessm/densessm/api"
)

// Documents calls fn with each document of the corpus, in a fixed order:
// the files in order, the rows or lines of each file in order. A document
// is a plain-text file, or the text of one JSONL line or Parquet or Arrow
// row; null and empty texts are skipped. Only one document (or one record
// batch or page of a structured file) is held at a time.
//
// An error from fn stops the reading and is returned as it is; a
// cancelled ctx (checked before each document) gives an error wrapping
// ctx.Err(); other errors name the file and wrap api.ErrCorrupt (a
// malformed file or a text that is not UTF-8), api.ErrNotFound (a JSONL
// line without the field), api.ErrUnsupported or api.ErrOutOfRange (a
// document over MaxDocumentBytes).
func (c *Corpus) Documents(ctx context.Context, fn func(doc string) error) error {
	return c.DocumentsProgress(ctx, fn, nil)
}

// DocumentsProgress is Documents that also calls progress, when not nil,
// with the number of bytes of the corpus's files read so far (up to
// Bytes()), as the reading advances.
func (c *Corpus) DocumentsProgress(ctx context.Context, fn func(doc string) error, progress func(bytesRead int64)) error {
	var base int64
	for _, f := range c.files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read corpus: %w", err)
		}
		if err := c.readFile(ctx, f, base, fn, progress); err != nil {
			var stop stopError
			if errors.As(err, &stop) {
				return stop.err
			}
			if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
				return fmt.Errorf("read corpus: %w", err)
			}
			return fmt.Errorf("read corpus: %s: %w", f.path, err)
		}
		base += f.size
		if progress != nil {
			progress(base)
		}
	}
	return nil
}

// stopError carries an error of the caller's fn through the readers.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

// readFile reads one file's documents.
func (c *Corpus) readFile(ctx context.Context, f sourceFile, base int64, fn func(string) error, progress func(int64)) error {
	fh, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	cr := &countingFile{f: fh, size: f.size, base: base, progress: progress}
	emit := func(doc string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(doc); err != nil {
			return stopError{err}
		}
		return nil
	}
	switch f.format {
	case formatJSONL:
		return readJSONL(bufio.NewReaderSize(cr, 1<<20), c.field, emit)
	case formatParquet:
		return readParquet(cr, c.field, emit)
	case formatArrow:
		return readArrow(cr, f.size, c.field, emit)
	default:
		return readText(cr, f, emit)
	}
}

// countingFile reads a file and reports how far the reading got, as the
// corpus's byte offset base plus the bytes read (at most the file's size).
type countingFile struct {
	f        *os.File
	size     int64
	base     int64
	read     int64
	progress func(int64)
}

func (c *countingFile) count(n int) {
	if n <= 0 || c.progress == nil {
		return
	}
	c.read = min(c.read+int64(n), c.size)
	c.progress(c.base + c.read)
}

// Read reads from the file's current offset.
func (c *countingFile) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.count(n)
	return n, err
}

// ReadAt reads at off.
func (c *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.f.ReadAt(p, off)
	c.count(n)
	return n, err
}

// Seek sets the offset of the next Read.
func (c *countingFile) Seek(off int64, whence int) (int64, error) { return c.f.Seek(off, whence) }

// recoverCorrupt turns a panic of a third-party decoder into an error
// wrapping api.ErrCorrupt in *errp. It must be deferred directly.
func recoverCorrupt(errp *error) {
	if r := recover(); r != nil {
		*errp = fmt.Errorf("malformed file (the decoder failed: %v): %w", r, api.ErrCorrupt)
	}
}

var _ io.ReaderAt = (*countingFile)(nil)
