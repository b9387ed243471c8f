package data

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// MaxDocumentBytes is the largest document the reader takes: a plain-text
// file, or one JSON line, longer than this gives an error wrapping
// api.ErrOutOfRange. (The tokenizer holds a document whole.)
const MaxDocumentBytes = 1 << 30

// sniffSize is how much of a file Open reads to tell text from binary.
const sniffSize = 8 << 10

// sniffText reports whether the first bytes of the file at path are UTF-8
// text: no NUL byte, and valid UTF-8 up to a character cut by the end of
// the sample.
func sniffText(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, sniffSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	whole := n < sniffSize
	if !whole {
		var one [1]byte
		k, _ := f.Read(one[:])
		whole = k == 0
	}
	return isText(buf[:n], whole), nil
}

// isText reports whether b is UTF-8 text without NUL. When b is a prefix
// of the text (whole false), an incomplete character at its end is allowed.
func isText(b []byte, whole bool) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	if !whole {
		// Leave out a character the end of the sample cuts.
		i := len(b) - 1
		for i > 0 && i > len(b)-4 && !utf8.RuneStart(b[i]) {
			i--
		}
		if i >= 0 && !utf8.FullRune(b[i:]) {
			b = b[:i]
		}
	}
	return utf8.Valid(b)
}

// readText reads a plain-text file as one document. A file that is not
// UTF-8 text is skipped when found by a walk, an error otherwise.
func readText(r io.Reader, f sourceFile, emit func(string) error) error {
	if f.size > MaxDocumentBytes {
		return fmt.Errorf("%d bytes, more than the %d a document may hold: %w", f.size, int64(MaxDocumentBytes), api.ErrOutOfRange)
	}
	var b strings.Builder
	b.Grow(int(f.size))
	n, err := io.Copy(&b, io.LimitReader(r, MaxDocumentBytes+1))
	if err != nil {
		return err
	}
	if n > MaxDocumentBytes {
		return fmt.Errorf("more than the %d bytes a document may hold: %w", int64(MaxDocumentBytes), api.ErrOutOfRange)
	}
	doc := b.String()
	if strings.IndexByte(doc, 0) >= 0 || !utf8.ValidString(doc) {
		if f.found {
			return nil
		}
		return fmt.Errorf("not UTF-8 text: %w", api.ErrCorrupt)
	}
	if doc == "" {
		return nil
	}
	return emit(doc)
}
