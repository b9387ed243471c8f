package data

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/densessm/densessm/internal/atomicfile"
)

// splitRule names the rule that assigns documents to the validation split;
// the manifest records it so that a change of rule forces a rebuild.
const splitRule = "splitmix64(index) below fraction, last document moved to an empty side"

// docHash maps a document index to [0, 1) with the SplitMix64 finalizer.
func docHash(index int64) float64 {
	x := uint64(index) + 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// isValidation reports whether document index is drawn for validation.
func isValidation(index int64, fraction float64) bool {
	return fraction > 0 && docHash(index) < fraction
}

// splitWriter collects the tokens of one split in a temporary file beside
// the final one, whose header needs the count known only at the end.
type splitWriter struct {
	f      *os.File
	w      *bufio.Writer
	bytes  int64 // bytes written
	tokens int64
	docs   int64
	// The last document written: where it starts, how many tokens.
	lastStart, lastTokens int64
}

// newSplitWriter creates the temporary file for split name in dir.
func newSplitWriter(dir, name string) (*splitWriter, error) {
	f, err := os.CreateTemp(dir, "."+name+".tokens.raw-*")
	if err != nil {
		return nil, fmt.Errorf("build tokens: %w", err)
	}
	return &splitWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// add appends one document's tokens.
func (s *splitWriter) add(toks []byte, n int64) error {
	if _, err := s.w.Write(toks); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	s.lastStart, s.lastTokens = s.bytes, n
	s.bytes += int64(len(toks))
	s.tokens += n
	s.docs++
	return nil
}

// moveLast moves the last document of s to the end of dst.
func (s *splitWriter) moveLast(dst *splitWriter) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	n := s.bytes - s.lastStart
	if _, err := io.Copy(dst.w, io.NewSectionReader(s.f, s.lastStart, n)); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	dst.lastStart, dst.lastTokens = dst.bytes, s.lastTokens
	dst.bytes += n
	dst.tokens += s.lastTokens
	dst.docs++
	if err := s.f.Truncate(s.lastStart); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	if _, err := s.f.Seek(s.lastStart, io.SeekStart); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	s.bytes = s.lastStart
	s.tokens -= s.lastTokens
	s.docs--
	s.lastStart, s.lastTokens = 0, 0 // the one before is not known
	return nil
}

// finish writes the token file path atomically: the header, then the
// collected tokens.
func (s *splitWriter) finish(path string, width int) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("build tokens: %w", err)
	}
	err := atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(tokensHeader(width, s.tokens)); err != nil {
			return err
		}
		_, err := io.Copy(w, io.NewSectionReader(s.f, 0, s.bytes))
		return err
	})
	if err != nil {
		return fmt.Errorf("build tokens: %w", err)
	}
	return nil
}

// discard closes and removes the temporary file.
func (s *splitWriter) discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}
