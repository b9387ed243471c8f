package checkpoint

import (
	"encoding/binary"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// storedWeights returns the weight storage the metadata of the
// checkpoint at path (what Open takes) names, as Checkpoint.WeightDType
// does once it is open, reading only the safetensors headers: no tensor
// data is mapped or read. It returns F32 for PyTorch weights, weights
// without WeightsKey, and weights it cannot read (Open says what is wrong
// with them).
func storedWeights(path string) api.DType {
	st, err := os.Stat(path)
	if err != nil {
		return api.F32
	}
	if st.IsDir() {
		for _, name := range []string{SingleFileName, IndexFileName, PyTorchFileName, PyTorchIndexFileName} {
			if p := filepath.Join(path, name); fileExists(p) {
				return storedWeights(p)
			}
		}
		return api.F32
	}
	if !strings.HasSuffix(path, ".json") {
		return fileWeights(path)
	}
	text, err := readcap.File(path, maxIndexSize)
	if err != nil {
		return api.F32
	}
	weightMap, err := decodeIndex(text)
	if err != nil {
		return api.F32
	}
	shards := slices.Sorted(maps.Values(weightMap))
	// The shards' metadata merge in this order, the first value of a key
	// winning (newCheckpoint).
	for _, shard := range slices.Compact(shards) {
		if !filepath.IsLocal(shard) {
			return api.F32
		}
		if m, ok := fileMetadata(filepath.Join(filepath.Dir(path), shard)); ok {
			if _, has := m[WeightsKey]; has {
				return weightsNamed(m)
			}
		}
	}
	return api.F32
}

// fileExists reports whether path names something that exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// fileWeights returns the weight storage the metadata of the one weights
// file at path names (see storedWeights).
func fileWeights(path string) api.DType {
	m, _ := fileMetadata(path)
	return weightsNamed(m)
}

// fileMetadata returns the metadata of the safetensors file at path, read
// from its header alone; ok is false when it has no header that parses (a
// PyTorch file, a corrupt one).
func fileMetadata(path string) (_ map[string]string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, false
	}
	return headerMetadata(f, st.Size())
}

// headerWeights returns the weight storage the metadata of the
// safetensors file r holds (of size bytes) names, reading its header
// alone: F32 when it has no WeightsKey or no header that parses.
func headerWeights(r io.ReaderAt, size int64) api.DType {
	m, _ := headerMetadata(r, size)
	return weightsNamed(m)
}

// headerMetadata returns the metadata of the safetensors file r holds (of
// size bytes), reading its header alone; ok is false when it has no header
// that parses (a PyTorch file, a corrupt one).
func headerMetadata(r io.ReaderAt, size int64) (_ map[string]string, ok bool) {
	var head [9]byte
	if size < int64(len(head)) {
		return nil, false
	}
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, false
	}
	n := binary.LittleEndian.Uint64(head[:8])
	if n == 0 || n > maxHeaderSize || n > uint64(size-8) || head[8] != '{' {
		return nil, false
	}
	text := make([]byte, n)
	if _, err := r.ReadAt(text, 8); err != nil {
		return nil, false
	}
	if !utf8.Valid(text) {
		return nil, false
	}
	_, metadata, err := decodeHeader(text)
	if err != nil {
		return nil, false
	}
	return metadata, true
}
