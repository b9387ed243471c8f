package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// Token file layout (see the package documentation).
const (
	tokensMagic   = "DSSMTOKS"
	tokensVersion = 1
	// TokensHeaderSize is the size of a token file's header; the tokens
	// follow it.
	TokensHeaderSize = 24
)

// TokenWidth returns the bytes per token of a token file for a vocabulary
// of vocabSize ids: 2 when every id fits in 16 bits, 4 otherwise.
func TokenWidth(vocabSize int) int {
	if vocabSize <= 1<<16 {
		return 2
	}
	return 4
}

// Tokens is an open token file. Reads go to the file (ReadAt), so memory
// does not grow with its size. It is safe for concurrent use.
type Tokens struct {
	f     *os.File
	path  string
	n     int64
	width int
}

// OpenTokens opens a token file and validates its header against the file
// size before anything else: the magic, the version, the width (2 or 4) and
// a count that fills the rest of the file exactly. A malformed header gives
// an error wrapping api.ErrCorrupt (api.ErrUnsupported for a later version),
// a missing file one wrapping api.ErrNotFound.
func OpenTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open tokens: %w: %w", err, api.ErrNotFound)
		}
		return nil, fmt.Errorf("open tokens: %w", err)
	}
	t, err := readTokensHeader(f, path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open tokens %s: %w", path, err)
	}
	return t, nil
}

// readTokensHeader validates the header of f.
func readTokensHeader(f *os.File, path string) (*Tokens, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %w", api.ErrCorrupt)
	}
	var head [TokensHeaderSize]byte
	if st.Size() < TokensHeaderSize {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header: %w", st.Size(), TokensHeaderSize, api.ErrCorrupt)
	}
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	width, n, err := parseTokensHeader(head[:], st.Size())
	if err != nil {
		return nil, err
	}
	return &Tokens{f: f, path: path, n: n, width: width}, nil
}

// parseTokensHeader checks a header against the size of its file and
// returns the token width and count.
func parseTokensHeader(head []byte, size int64) (width int, n int64, err error) {
	if len(head) < TokensHeaderSize || size < TokensHeaderSize {
		return 0, 0, fmt.Errorf("truncated header: %w", api.ErrCorrupt)
	}
	if string(head[:8]) != tokensMagic {
		return 0, 0, fmt.Errorf("not a token file (magic %q): %w", head[:8], api.ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != tokensVersion {
		return 0, 0, fmt.Errorf("token file version %d, this build reads version %d: %w", v, tokensVersion, api.ErrUnsupported)
	}
	w := binary.LittleEndian.Uint32(head[12:])
	if w != 2 && w != 4 {
		return 0, 0, fmt.Errorf("token width %d bytes, not 2 or 4: %w", w, api.ErrCorrupt)
	}
	count := binary.LittleEndian.Uint64(head[16:])
	room := uint64(size-TokensHeaderSize) / uint64(w)
	if count > room {
		return 0, 0, fmt.Errorf("header counts %d tokens, the file holds %d: %w", count, room, api.ErrCorrupt)
	}
	if rest := uint64(size-TokensHeaderSize) - count*uint64(w); rest != 0 {
		return 0, 0, fmt.Errorf("%d bytes after the %d tokens the header counts: %w", rest, count, api.ErrCorrupt)
	}
	return int(w), int64(count), nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int64 { return t.n }

// Width returns the bytes per token, 2 or 4.
func (t *Tokens) Width() int { return t.width }

// Path returns the file's path.
func (t *Tokens) Path() string { return t.path }

// readChunk is how many tokens Read decodes at a time.
const readChunk = 16 << 10

// Read fills dst with the tokens starting at token off. A range outside the
// file gives an error wrapping api.ErrOutOfRange; a token over the int32
// range (only possible in a damaged 4-byte file) one wrapping
// api.ErrCorrupt.
func (t *Tokens) Read(off int64, dst []int32) error {
	if off < 0 || off > t.n || int64(len(dst)) > t.n-off {
		return fmt.Errorf("read tokens [%d, %d) of %s, which holds %d: %w", off, off+int64(len(dst)), t.path, t.n, api.ErrOutOfRange)
	}
	buf := make([]byte, min(len(dst), readChunk)*t.width)
	for done := 0; done < len(dst); {
		k := min(len(dst)-done, readChunk)
		b := buf[:k*t.width]
		if _, err := t.f.ReadAt(b, TokensHeaderSize+(off+int64(done))*int64(t.width)); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("the file is shorter than its header says: %w", api.ErrCorrupt)
			}
			return fmt.Errorf("read tokens of %s: %w", t.path, err)
		}
		out := dst[done : done+k]
		if t.width == 2 {
			for i := range out {
				out[i] = int32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		} else {
			for i := range out {
				v := binary.LittleEndian.Uint32(b[4*i:])
				if v > math.MaxInt32 {
					return fmt.Errorf("read tokens of %s: token %d is %d, over the int32 range: %w", t.path, off+int64(done+i), v, api.ErrCorrupt)
				}
				out[i] = int32(v)
			}
		}
		done += k
	}
	return nil
}

// Close closes the file.
func (t *Tokens) Close() error { return t.f.Close() }

// tokensHeader returns the header of a file of n tokens of width bytes.
func tokensHeader(width int, n int64) []byte {
	head := make([]byte, TokensHeaderSize)
	copy(head, tokensMagic)
	binary.LittleEndian.PutUint32(head[8:], tokensVersion)
	binary.LittleEndian.PutUint32(head[12:], uint32(width))
	binary.LittleEndian.PutUint64(head[16:], uint64(n))
	return head
}

// appendToken appends id's little-endian bytes; id must fit the width.
func appendToken(b []byte, width int, id int32) []byte {
	if width == 2 {
		return binary.LittleEndian.AppendUint16(b, uint16(id))
	}
	return binary.LittleEndian.AppendUint32(b, uint32(id))
}

// checkToken reports an id outside [0, vocabSize), or one that does not fit
// width bytes.
func checkToken(id int64, vocabSize, width int) error {
	if id < 0 || id >= int64(vocabSize) || (width == 2 && id >= 1<<16) {
		return fmt.Errorf("token id %d is outside the vocabulary of %d: %w", id, vocabSize, api.ErrOutOfRange)
	}
	return nil
}

// WriteTokens writes tokens to path as a token file (atomically: readers
// see the old file or the whole new one), with the width TokenWidth gives
// for vocabSize. Every token must lie in [0, vocabSize); one that does not
// gives an error wrapping api.ErrOutOfRange and leaves path untouched.
func WriteTokens(path string, vocabSize int, tokens []int32) error {
	if vocabSize <= 0 || vocabSize > math.MaxInt32 {
		return fmt.Errorf("write tokens %s: vocabulary size %d: %w", path, vocabSize, api.ErrConfig)
	}
	width := TokenWidth(vocabSize)
	for i, id := range tokens {
		if err := checkToken(int64(id), vocabSize, width); err != nil {
			return fmt.Errorf("write tokens %s: token %d: %w", path, i, err)
		}
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(tokensHeader(width, int64(len(tokens)))); err != nil {
			return err
		}
		buf := make([]byte, 0, 64<<10)
		for i, id := range tokens {
			buf = appendToken(buf, width, id)
			if len(buf) == cap(buf) || i == len(tokens)-1 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	})
}
