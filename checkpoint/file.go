package checkpoint

import (
	"fmt"
	"io"
	"math"
	"os"

	"github.com/densessm/densessm/api"
)

// file is one open weights file (safetensors or PyTorch): its bytes (mapped
// or read) and its validated header.
type file struct {
	path    string
	data    []byte
	release func() error
	mapped  bool
	header  *header
	// copies holds, by name, the tensors of a PyTorch file that are not
	// contiguous in it and were materialised at open (TensorInfo.Offset -1).
	copies map[string][]byte
}

// openFile opens, maps and validates one weights file: safetensors, or a
// PyTorch zip checkpoint (see parseFile).
func openFile(path string) (_ *file, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, notFound(err))
	}
	defer f.Close() // a mapping stays valid after the descriptor is closed
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("checkpoint %s: not a regular file: %w", path, api.ErrNotFound)
	}
	size := st.Size()
	if size < 8 {
		return nil, corruptf(path, "%d bytes is too short for the 8-byte header length", size)
	}
	if uint64(size) > math.MaxInt {
		return nil, fmt.Errorf("checkpoint %s: %d bytes do not fit in memory: %w", path, size, api.ErrUnsupported)
	}
	data, release, mapped, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	sf := &file{path: path, data: data, release: release, mapped: mapped}
	defer func() {
		if err != nil {
			sf.close()
		}
	}()
	err = guardFault(path, func() (perr error) {
		sf.header, sf.copies, perr = parseFile(path, data)
		return perr
	})
	if err != nil {
		return nil, err
	}
	return sf, nil
}

// bytes returns the stored bytes of t, aliasing the file's memory (or the
// materialised copy of a strided PyTorch tensor); the blocks of a Q8_0
// tensor are assembled into a new slice.
func (f *file) bytes(t TensorInfo) []byte {
	if t.Offset < 0 {
		return f.copies[t.Name]
	}
	if t.DType == api.Q8_0 {
		return q8Blocks(f.data, t)
	}
	return f.data[t.Offset : t.Offset+t.Size]
}

// close releases the file's memory. The bytes must not be used afterwards.
func (f *file) close() error {
	if f.release == nil {
		return nil
	}
	err := f.release()
	f.data, f.release = nil, nil
	if err != nil {
		return fmt.Errorf("checkpoint %s: release: %w", f.path, err)
	}
	return nil
}

// readFile reads the first size bytes of f into memory (the fallback where
// memory mapping is not possible).
func readFile(f *os.File, size int) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(size)), data); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return data, func() error { return nil }, nil
}

// notFound adds api.ErrNotFound to an error that says a file does not exist.
func notFound(err error) error {
	if os.IsNotExist(err) {
		return fmt.Errorf("%w: %w", err, api.ErrNotFound)
	}
	return err
}
